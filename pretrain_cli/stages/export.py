"""`ptk export`: a fine-tune as a plain Hugging Face model directory that needs neither ptk nor peft.

    ptk export work/ft-lora --merge --out work/export/lora       # the best seed, LoRA merged in
    ptk export work/ft-lora --seed 2 --merge --out work/export/lora-2
    ptk export work/ft-full --out work/export/full               # a full fine-tune: a plain copy

The result loads with `AutoModelForSequenceClassification.from_pretrained(OUT)` (or
`AutoModelForTokenClassification` for NER) and gives the fine-tune's dev predictions. LoRA, AdaLoRA
and IA3 fold into the weights they adapt (`--merge`); BitFit and full fine-tunes are plain models
already. Bottleneck adapters and prompt/prefix tuning add computation that no plain BERT has, so
they cannot be exported this way: load them with `modeling.finetuned.load_finetuned`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar

from pretrain_cli.config import StageConfig, option
from pretrain_cli.console import say
from pretrain_cli.errors import UserError
from pretrain_cli.store import Manifest, StageOutput, read_manifest
from pretrain_cli.store.output import PROGRESS


@dataclasses.dataclass(kw_only=True)
class ExportConfig(StageConfig):
    """Export a fine-tune as a plain Hugging Face model directory (LoRA/IA3 merged in with --merge)."""

    stage: ClassVar[str] = "export"

    run: Path = option(help="A `ptk finetune` output directory.", argument=True)
    out: Path = option(help="Where the plain model directory goes.", hashed=False)
    seed: int | None = option(None, "The seed to export; default: the seed with the best dev metric.")
    merge: bool = option(False, "Fold LoRA/AdaLoRA/IA3 weights into the base weights (required for "
                                "those methods: the export is a plain model).")

    def problems(self) -> list[str]:
        if not (self.run / "manifest.json").is_file():
            return [f"{self.run}: no manifest.json, so not a finished `ptk finetune` run; finish it or fix "
                    f"the path"]
        return []


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
    out = StageOutput(cfg, cfg.out, inputs={"finetune": manifest},
                      owned=("model.safetensors", "*.json", "*.txt"))
    if (done := out.up_to_date()) is not None:
        return done
    result = manifest.stats["seeds"][str(seed)]
    export_merged(cfg.run / f"seed-{seed}" / result["saved"], cfg.out)
    for path in sorted(cfg.out.iterdir()):
        if path.is_file() and path.name not in ("manifest.json", PROGRESS):
            out.record_file(path.name)
    metric = manifest.extra["metric"]
    say(f"export: seed {seed} of {cfg.run} ({manifest.extra['task']}, {method}, dev {metric} "
        f"{result['dev'][metric]:.4f}) as a plain model in {cfg.out}")
    return out.finish(stats={"seed": seed, "dev": result["dev"]},
                      extra={"method": method, "merged": method in MERGED,
                             "task": manifest.extra["task"], "labels": manifest.extra.get("labels", []),
                             "source": str(cfg.run)})
