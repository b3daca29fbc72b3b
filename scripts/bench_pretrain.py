"""Tokens/s of ptk's pretraining engine next to the HF `Trainer` path, on the same examples, in one run.

    python scripts/bench_pretrain.py                                  # mini preset, CPU, ~3 minutes
    python scripts/bench_pretrain.py --device cuda --preset base --steps 200 --micro-batch-size 64

Both sides train `BertForPreTraining` with the same config (SDPA attention, same seed), on the same
pair examples (`ptk mask` output; built from the wiki summaries sample with the bert-base-uncased
vocabulary of the MiniLM sample unless --examples is given), with the same global batch, precision,
optimizer and schedule. The HF side gets each example's original tokens back, and
`DataCollatorForLanguageModeling` masks them again, as an HF user would; its forward scores every
position against the whole vocabulary, where ptk runs the MLM head on the masked positions only.
Neither side uses the `datasets` library. Throughput counts real (unpadded) tokens per second over
the steps after --warmup; on CUDA the MFU uses 6·N_params·tokens + 12·layers·hidden·seq·tokens
(attention) FLOPs over the GPU's dense bf16 peak (or --peak-tflops).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Dense bf16 peak TFLOP/s by device-name fragment (vendor datasheets, SXM parts).
PEAK_BF16_TFLOPS = {"H200": 989.4, "H100": 989.4, "A100": 312.0, "L40S": 362.1, "L4": 121.0, "A10G": 70.0}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="mini", help="ptk model preset (both sides)")
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps per side")
    parser.add_argument("--warmup", type=int, default=3, help="first steps left out of the timing")
    parser.add_argument("--micro-batch-size", type=int, default=16)
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--examples", type=Path, help="existing `ptk mask` output (default: build one)")
    parser.add_argument("--articles", type=int, default=1500, help="wiki summaries used to build examples")
    parser.add_argument("--work", type=Path, default=Path("work/bench"), help="where built examples go")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--peak-tflops", type=float, help="GPU peak for MFU (default: looked up by name)")
    return parser.parse_args()


def build_examples(args: argparse.Namespace) -> Path:
    """corpus → tokenize (bert-base-uncased vocabulary) → mask, each skipped when up to date."""
    from pretrain_cli.samples import sample_path
    from pretrain_cli.stages.corpus.build import CorpusConfig
    from pretrain_cli.stages.corpus.build import run as corpus
    from pretrain_cli.stages.mask.stage import MaskConfig
    from pretrain_cli.stages.mask.stage import run as mask
    from pretrain_cli.stages.tokenize.stage import TokenizeConfig
    from pretrain_cli.stages.tokenize.stage import run as tokenize

    work = args.work / f"wiki{args.articles}-seq{args.max_seq_length}"
    corpus(CorpusConfig(inputs=[Path("sample:wiki_summaries")], out=work / "docs", limit=args.articles))
    tokenize(TokenizeConfig(docs=work / "docs", out=work / "tokens", tokenizer=sample_path("minilm")))
    mask(MaskConfig(tokens=work / "tokens", out=work / "examples", max_seq_length=args.max_seq_length,
                    dupe_factor=1))
    return work / "examples"


def run_ptk(args: argparse.Namespace, examples: Path, out: Path) -> dict[str, float]:
    from pretrain_cli.stages.pretrain import PretrainConfig, run

    manifest = run(PretrainConfig(examples=examples, out=out, preset=args.preset, max_steps=args.steps,
                                  micro_batch_size=args.micro_batch_size, grad_accum=args.grad_accum,
                                  device=args.device, save_every=args.steps + 1, log_every=1))
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    first, last = records[args.warmup - 1], records[-1]
    return {"tokens": last["tokens"] - first["tokens"], "seconds": last["elapsed_s"] - first["elapsed_s"],
            "loss": sum(r["loss"] for r in records) / len(records),
            "params": manifest.extra["num_parameters"]}


class PairDataset:
    """ptk examples with the masked tokens put back, as the dicts an HF collator expects."""

    def __init__(self, examples: Path) -> None:
        from pretrain_cli.store import read_manifest
        from pretrain_cli.training.data import PairExamples

        manifest = read_manifest(examples, "mask")
        self.examples = PairExamples.from_manifest(manifest, "train", manifest.extra["vocab_size"])
        self.rows = [(p, i) for p in self.examples.pieces for i in range(len(p.nsp))]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        piece, i = self.rows[index]
        ids = piece.ids[piece.ids_offsets[i]:piece.ids_offsets[i + 1]].astype("int64")
        a, b = piece.mask_offsets[i], piece.mask_offsets[i + 1]
        ids[piece.positions[a:b]] = piece.labels[a:b]
        split = int(piece.segment_b[i])
        return {"input_ids": ids.tolist(), "token_type_ids": [0] * split + [1] * (len(ids) - split),
                "next_sentence_label": int(piece.nsp[i])}


def run_hf(args: argparse.Namespace, examples: Path, out: Path, config: Any) -> dict[str, float]:
    import torch
    from transformers import (
        AutoTokenizer,
        BertForPreTraining,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    tokenizer = AutoTokenizer.from_pretrained(str(examples / "tokenizer"))
    masker = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15, seed=0)
    seen = {"tokens": 0}

    def collate(features: list[dict[str, Any]]) -> dict[str, Any]:
        batch = masker(features)
        seen["tokens"] += int(batch["attention_mask"].sum())
        return batch

    marks: list[tuple[float, int]] = []

    class StepClock(TrainerCallback):
        def on_step_end(self, *_: Any, **__: Any) -> None:
            if args.device == "cuda":
                torch.cuda.synchronize()
            marks.append((time.perf_counter(), seen["tokens"]))

    torch.manual_seed(0)
    model = BertForPreTraining(config)
    training = TrainingArguments(
        output_dir=str(out), max_steps=args.steps, per_device_train_batch_size=args.micro_batch_size,
        gradient_accumulation_steps=args.grad_accum, learning_rate=5e-4, weight_decay=0.01, warmup_steps=0.1,
        adam_epsilon=1e-6, max_grad_norm=1.0, lr_scheduler_type="linear", bf16=args.device == "cuda",
        use_cpu=args.device == "cpu", save_strategy="no", logging_steps=args.steps, report_to="none",
        disable_tqdm=True, dataloader_num_workers=0, seed=0)
    trainer = Trainer(model=model, args=training, train_dataset=PairDataset(examples), data_collator=collate,
                      callbacks=[StepClock()])
    result = trainer.train()
    (t0, k0), (t1, k1) = marks[args.warmup - 1], marks[-1]
    return {"tokens": k1 - k0, "seconds": t1 - t0, "loss": result.training_loss}


def mfu(args: argparse.Namespace, side: dict[str, float], config: Any, seq: float) -> str:
    import torch

    if args.device != "cuda":
        return "n/a"
    name = torch.cuda.get_device_name()
    peak = args.peak_tflops or next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
    if peak is None:
        return f"n/a (unknown peak for {name}; pass --peak-tflops)"
    per_token = 6 * side["params"] + 12 * config.num_hidden_layers * config.hidden_size * seq
    return f"{per_token * side['tokens'] / side['seconds'] / (peak * 1e12):.1%}"


def main() -> None:
    import torch

    from pretrain_cli.modeling.presets import PRESETS, bert_config, padded_vocab_size
    from pretrain_cli.store import read_manifest

    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.warmup < 1 or args.steps <= args.warmup:
        raise SystemExit("--steps must exceed --warmup, and --warmup must be at least 1")
    examples = args.examples or build_examples(args)
    upstream = read_manifest(examples, "mask")
    config = bert_config(PRESETS[args.preset], vocab_size=padded_vocab_size(upstream.extra["vocab_size"]),
                         pad_token_id=upstream.extra["special_ids"]["pad"])
    with tempfile.TemporaryDirectory(dir=args.work if args.work.is_dir() else None) as tmp:
        ptk = run_ptk(args, examples, Path(tmp) / "ptk")
        hf = run_hf(args, examples, Path(tmp) / "hf", config)
    hf["params"] = ptk["params"]
    seq = upstream.tokens / upstream.rows
    threads = f"CPU, {torch.get_num_threads()} threads"
    device = torch.cuda.get_device_name() if args.device == "cuda" else threads
    print(f"\nbench_pretrain: preset {args.preset} ({ptk['params']:,} parameters), {device}, "
          f"global batch {args.micro_batch_size}×{args.grad_accum}, max_seq_length {args.max_seq_length} "
          f"(mean {seq:.0f} tokens), {args.steps} steps ({args.warmup} untimed), examples {examples}")
    print(f"{'engine':<34}{'tokens/s':>12}{'MFU':>10}{'mean loss':>12}")
    for name, side in (("ptk (masked-position MLM head)", ptk), ("HF Trainer + MLM collator", hf)):
        rate = side["tokens"] / side["seconds"]
        print(f"{name:<34}{rate:>12,.0f}{mfu(args, side, config, seq):>10}{side['loss']:>12.3f}")
    print(f"ratio ptk / HF: {(ptk['tokens'] / ptk['seconds']) / (hf['tokens'] / hf['seconds']):.2f}×")


if __name__ == "__main__":
    main()
