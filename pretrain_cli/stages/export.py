"""`ptk export`: a fine-tune as a plain Hugging Face model directory that needs neither ptk nor peft,
or an encoder as a sentence-transformers model.

    ptk export work/ft-lora --merge --out work/export/lora       # the best seed, LoRA merged in
    ptk export work/ft-lora --seed 2 --merge --out work/export/lora-2
    ptk export work/ft-full --out work/export/full               # a full fine-tune: a plain copy
    ptk export work/simcse --sentence-transformers work/export/st          # its final/ checkpoint
    ptk export sample:minilm --sentence-transformers work/export/minilm --pooling cls

The result loads with `AutoModelForSequenceClassification.from_pretrained(OUT)` (or
`AutoModelForTokenClassification` for NER) and gives the fine-tune's dev predictions. LoRA, AdaLoRA
and IA3 fold into the weights they adapt (`--merge`); BitFit and full fine-tunes are plain models
already. Bottleneck adapters and prompt/prefix tuning add computation that no plain BERT has, so
they cannot be exported this way: load them with `modeling.finetuned.load_finetuned`.

With --sentence-transformers, `SentenceTransformer(DIR).encode(texts)` gives the vectors ptk computes
for the run (`modeling.sentence.encode_texts`) with the pooling and length it recorded (mean and 128
tokens when it recorded none); see `modeling.sentence_export` for the files.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar, Literal

from pretrain_cli.config import StageConfig, option
from pretrain_cli.console import say
from pretrain_cli.errors import UserError
from pretrain_cli.store import Manifest, StageOutput, files_input, read_manifest
from pretrain_cli.store.manifest import MANIFEST
from pretrain_cli.store.output import PROGRESS


@dataclasses.dataclass(kw_only=True)
class ExportConfig(StageConfig):
    """Export a fine-tune as a plain HF model (LoRA/IA3 merged) or an encoder for sentence-transformers."""

    stage: ClassVar[str] = "export"

    run: Path = option(help="With --out: a `ptk finetune` output. With --sentence-transformers: a `ptk "
                            "pretrain` output or one of its checkpoints, an HF BERT directory, or "
                            "sample:minilm.", argument=True)
    out: Path | None = option(None, "Write the fine-tune here as a plain model directory.", hashed=False)
    sentence_transformers: Path | None = option(None, "Write the encoder here as a sentence-transformers "
                                                      "model directory.", hashed=False)
    seed: int | None = option(None, "--out: the seed to export; default: the seed with the best dev metric.")
    merge: bool = option(False, "--out: fold LoRA/AdaLoRA/IA3 weights into the base weights (required for "
                                "those methods: the export is a plain model).")
    # the values of modeling.sentence.POOLINGS, spelled out: that module imports torch
    pooling: Literal["cls", "mean"] | None = option(
        None, "--sentence-transformers: how token vectors pool into a sentence vector; default: the pooling "
              "the run recorded, mean if it recorded none.")
    max_seq_length: int | None = option(
        None, "--sentence-transformers: longest input in tokens (longer ones are cut); default: the length "
              "the run recorded, 128 if it recorded none.")

    def inactive(self) -> tuple[str, ...]:
        return ("pooling", "max_seq_length") if self.sentence_transformers is None else ()

    @property
    def destination(self) -> Path:
        """The directory this export writes (validated: exactly one of --out, --sentence-transformers)."""
        destination = self.out if self.out is not None else self.sentence_transformers
        assert destination is not None
        return destination

    def problems(self) -> list[str]:
        if (self.out is None) == (self.sentence_transformers is None):
            return ["give exactly one of --out DIR (a fine-tune as a plain model) and "
                    "--sentence-transformers DIR (an encoder as a sentence-transformers model)"]
        encoder = self.sentence_transformers is not None
        modes = ("--sentence-transformers", "--out")
        mode, other = modes if encoder else modes[::-1]
        given = ({"--merge": self.merge, "--seed": self.seed is not None} if encoder else
                 {"--pooling": self.pooling is not None, "--max-seq-length": self.max_seq_length is not None})
        problems = [f"{flag} applies only with {other}; drop it with {mode}" for flag, is_set in given.items()
                    if is_set]
        if encoder and self.max_seq_length is not None and self.max_seq_length < 2:
            problems.append(f"--max-seq-length {self.max_seq_length}: must be at least 2 ([CLS] and [SEP])")
        if not encoder and not (self.run / MANIFEST).is_file():
            problems.append(f"{self.run}: no manifest.json, so not a finished `ptk finetune` run; finish it "
                            f"or fix the path")
        return problems


def chosen_seed(manifest: Manifest, seed: int | None, run: Path) -> int:
    """`seed`, or the seed whose dev metric is best (the first of equals)."""
    results = manifest.stats["seeds"]
    if seed is not None:
        if str(seed) not in results:
            raise UserError(f"--seed {seed}: {run} has seeds {', '.join(sorted(results, key=int))}; pick one")
        return seed
    metric = manifest.extra["metric"]
    return int(max(sorted(results, key=int), key=lambda s: results[s]["dev"][metric]))


def run(cfg: ExportConfig) -> Manifest:
    cfg.validate()
    if cfg.sentence_transformers is not None:
        return export_sentence_transformers(cfg, cfg.sentence_transformers)
    return export_finetune(cfg)


def export_finetune(cfg: ExportConfig) -> Manifest:
    """--out: the chosen seed of a `ptk finetune` run as a plain HF model directory."""
    from pretrain_cli.modeling.finetuned import MERGEABLE, MERGED, export_merged

    manifest = read_manifest(cfg.run, "finetune")
    method = manifest.extra.get("method")
    if "metric" not in manifest.extra:
        raise UserError(f"{cfg.run}: written by an older ptk finetune; rerun that fine-tune with --force")
    if method not in MERGEABLE:  # adapters, prompt and prefix add computation no plain BERT has
        raise UserError(f"{cfg.run} holds {method} weights, which add computation a plain BERT does not "
                        f"have, so it cannot be exported as a plain model; load it with ptk "
                        f"(modeling.finetuned.load_finetuned) instead")
    if method in MERGED and not cfg.merge:
        raise UserError(f"{cfg.run} holds {method} adapters; pass --merge to fold them into the base weights "
                        f"(the export is a plain model)")
    seed = chosen_seed(manifest, cfg.seed, cfg.run)
    out = StageOutput(cfg, cfg.destination, inputs={"finetune": manifest},
                      owned=("model.safetensors", "*.json", "*.txt"))
    if (done := out.up_to_date()) is not None:
        return done
    result = manifest.stats["seeds"][str(seed)]
    export_merged(cfg.run / f"seed-{seed}" / result["saved"], cfg.destination)
    for path in sorted(cfg.destination.iterdir()):
        if path.is_file() and path.name not in ("manifest.json", PROGRESS):
            out.record_file(path.name)
    metric = manifest.extra["metric"]
    say(f"export: seed {seed} of {cfg.run} ({manifest.extra['task']}, {method}, dev {metric} "
        f"{result['dev'][metric]:.4f}) as a plain model in {cfg.destination}")
    return out.finish(stats={"seed": seed, "dev": result["dev"]},
                      extra={"method": method, "merged": method in MERGED,
                             "task": manifest.extra["task"], "labels": manifest.extra.get("labels", []),
                             "source": str(cfg.run)})


def export_sentence_transformers(cfg: ExportConfig, destination: Path) -> Manifest:
    """--sentence-transformers: the run's encoder with its pooling, as a sentence-transformers model."""
    from pretrain_cli.modeling.finetuned import model_files
    from pretrain_cli.modeling.sentence import (
        DEFAULT_MAX_LENGTH,
        ST_POOLING_DIR,
        find_encoder,
        load_encoder,
        recorded_max_seq_length,
        sentence_files,
    )
    from pretrain_cli.modeling.sentence_export import write_sentence_transformers
    from pretrain_cli.samples import resolve_input

    model_dir = find_encoder(resolve_input(cfg.run))[0]  # refuses what is not a BERT encoder
    encoder, _, pooling = load_encoder(model_dir, pooling=cfg.pooling)  # or a pooling ptk lacks
    max_seq_length = cfg.max_seq_length or recorded_max_seq_length(model_dir) or DEFAULT_MAX_LENGTH
    positions = encoder.config.max_position_embeddings
    if max_seq_length > positions:
        raise UserError(f"--max-seq-length {max_seq_length}: the model in {model_dir} reads at most "
                        f"{positions} positions; pass --max-seq-length {positions} or less")
    # what the vectors depend on: the weights, the tokenizer and the recorded pooling and length
    sources = [*model_files(model_dir, weights=True), *sentence_files(model_dir)]
    out = StageOutput(cfg, destination, inputs={"model": files_input("model", sources)},
                      owned=("model.safetensors", "*.json", "*.txt", "README.md", ST_POOLING_DIR))
    if (done := out.up_to_date()) is not None:
        return done
    write_sentence_transformers(model_dir, destination, pooling=pooling, max_seq_length=max_seq_length)
    for path in sorted(destination.rglob("*")):
        relpath = path.relative_to(destination).as_posix()
        if path.is_file() and relpath not in (MANIFEST, PROGRESS):
            out.record_file(relpath)
    say(f"export: the encoder of {model_dir} as a sentence-transformers model in {destination} ({pooling} "
        f"pooling, up to {max_seq_length} tokens)")
    return out.finish(extra={"format": "sentence-transformers", "pooling": pooling,
                             "max_seq_length": max_seq_length, "dimension": encoder.config.hidden_size,
                             "source": str(model_dir)})
