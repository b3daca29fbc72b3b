"""Tokens/s and MFU of ptk's pretraining engine next to the HF `Trainer` path, same examples, one run.

    python scripts/bench_pretrain.py                                  # mini preset, CPU, ~3 minutes
    python scripts/bench_pretrain.py --device cuda --preset base --steps 200 --micro-batch-size 64 \
        --precision bf16 --json work/bench/pretrain-h100.json

Both sides train `BertForPreTraining` with the same config (SDPA attention, same seed, dropout
0.1), on the same pair examples (`ptk mask` output; built from the wiki summaries sample with the
bert-base-uncased vocabulary of the MiniLM sample unless --examples is given), with the same global
batch, precision (--precision: HF `bf16=True`), compilation (--compile: HF `torch_compile=True`),
and schedule. The HF side is AdamW always; `--optimizer lamb` changes ptk's only, so the ratio
compares engines only with adamw (the default). The HF side gets each example's original tokens
back, and `DataCollatorForLanguageModeling` masks them again, as an HF user would; its forward
scores every position against the whole vocabulary, where ptk runs the MLM head on the masked
positions only. Neither side uses the `datasets` library. Throughput counts real (unpadded) tokens
per second over the steps after --warmup.

MFU is `tokens/s × flops.training_flops_per_token(...) / flops.peak_flops(...)` for both sides:
the FLOPs the task *requires* per token (6 per weight per token through the encoder, attention,
the MLM head at the masked positions only, the NSP head once per pair), each side with its own
masked fraction. The HF side's dense-vocabulary head is therefore overhead, not work: MFU compares
how much of the GPU each engine turns into the same training. The peak is the GPU's dense
datasheet figure for the precision (TF32 for fp32), or --peak-tflops; on CPU MFU is n/a unless
--peak-tflops is given.
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


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="mini", help="ptk model preset (both sides)")
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps per side")
    parser.add_argument("--warmup", type=int, default=3, help="first steps left out of the timing")
    parser.add_argument("--micro-batch-size", type=int, default=16)
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="both sides; auto: bf16 on a CUDA GPU that has it, else fp32")
    parser.add_argument("--compile", action="store_true", help="torch.compile both sides")
    parser.add_argument("--optimizer", choices=("adamw", "lamb"), default="adamw",
                        help="ptk's optimizer (HF stays AdamW: the ratio is meaningful with adamw only)")
    parser.add_argument("--examples", type=Path, help="existing `ptk mask` output (default: build one)")
    parser.add_argument("--articles", type=int, default=1500, help="wiki summaries used to build examples")
    parser.add_argument("--work", type=Path, default=Path("work/bench"), help="where built examples go")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--peak-tflops", type=float, default=0.0,
                        help="device peak for MFU (default: the datasheet figure of a known GPU)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
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


def apply_common(args: argparse.Namespace) -> None:
    """--threads, and the step counts every bench_* script times the same way."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.warmup < 1 or args.steps <= args.warmup:
        raise SystemExit("--steps must exceed --warmup, and --warmup must be at least 1")


def step_clock() -> type:
    """A TrainerCallback class that appends the time at each optimizer step's end to a list,
    after the GPU has finished the step."""
    import torch
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        def __init__(self, device: str, marks: list[float]) -> None:
            self.device, self.marks = device, marks

        def on_step_end(self, *_: Any, **__: Any) -> None:
            if self.device == "cuda":
                torch.cuda.synchronize()
            self.marks.append(time.perf_counter())

    return StepClock


def resolved_precision(choice: str, device: str) -> str:
    """What --precision auto becomes, as ptk resolves it: bf16 on a CUDA GPU that has it, else fp32."""
    import torch

    if choice != "auto":
        return choice
    return "bf16" if device == "cuda" and torch.cuda.is_bf16_supported() else "fp32"


def run_ptk(args: argparse.Namespace, examples: Path, out: Path) -> dict[str, float]:
    from pretrain_cli.stages.pretrain import PretrainConfig, run

    run(PretrainConfig(examples=examples, out=out, preset=args.preset, max_steps=args.steps,
                       micro_batch_size=args.micro_batch_size, grad_accum=args.grad_accum, device=args.device,
                       precision=args.precision, compile=args.compile, optimizer=args.optimizer,
                       peak_tflops=args.peak_tflops, save_every=args.steps + 1, log_every=1))
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    first, last = records[args.warmup - 1], records[-1]
    return {"tokens": last["tokens"] - first["tokens"], "seconds": last["elapsed_s"] - first["elapsed_s"],
            "loss": sum(r["loss"] for r in records) / len(records)}


class PairDataset:
    """ptk examples with the masked tokens put back, as the dicts an HF collator expects."""

    def __init__(self, examples: Any) -> None:
        self.examples = examples  # a pretrain_cli.training.data.PairExamples
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


def run_hf(args: argparse.Namespace, examples: Path, train_set: Any, out: Path, config: Any,
           precision: str) -> dict[str, float]:
    import torch
    from transformers import (
        AutoTokenizer,
        BertForPreTraining,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainingArguments,
    )

    tokenizer = AutoTokenizer.from_pretrained(str(examples / "tokenizer"))
    masker = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15, seed=0)
    # tokens per micro-batch in the order they are made: the loader builds a batch ahead of the
    # step that trains on it, so a running total read at a step's end would count one batch early
    batch_tokens: list[int] = []
    seen = {"masked": 0}

    def collate(features: list[dict[str, Any]]) -> dict[str, Any]:
        batch = masker(features)
        batch_tokens.append(int(batch["attention_mask"].sum()))
        seen["masked"] += int((batch["labels"] != -100).sum())
        return batch

    marks: list[float] = []

    torch.manual_seed(0)
    model = BertForPreTraining(config)
    training = TrainingArguments(
        output_dir=str(out), max_steps=args.steps, per_device_train_batch_size=args.micro_batch_size,
        gradient_accumulation_steps=args.grad_accum, learning_rate=5e-4, weight_decay=0.01, warmup_steps=0.1,
        adam_epsilon=1e-6, max_grad_norm=1.0, lr_scheduler_type="linear", bf16=precision == "bf16",
        # ptk's fp32 matmuls on CUDA are TF32 too, where the GPU has it (Ampere on)
        tf32=args.device == "cuda" and torch.cuda.get_device_capability()[0] >= 8 or None,
        torch_compile=args.compile, use_cpu=args.device == "cpu", save_strategy="no",
        logging_steps=args.steps, report_to="none", disable_tqdm=True, dataloader_num_workers=0, seed=0)
    trainer = Trainer(model=model, args=training, train_dataset=PairDataset(train_set), data_collator=collate,
                      callbacks=[step_clock()(args.device, marks)])
    result = trainer.train()
    # the steps after the warmup ones trained micro-batches warmup × accum … steps × accum
    timed = batch_tokens[args.warmup * args.grad_accum:args.steps * args.grad_accum]
    return {"tokens": sum(timed), "seconds": marks[-1] - marks[args.warmup - 1], "loss": result.training_loss,
            "masked_fraction": seen["masked"] / sum(batch_tokens)}


def main() -> None:
    import torch
    import transformers
    from transformers import BertForPreTraining

    from pretrain_cli.modeling.presets import PRESETS, bert_config, padded_vocab_size
    from pretrain_cli.store import read_manifest
    from pretrain_cli.training.data import PairExamples
    from pretrain_cli.training.flops import attention_length, peak_flops, training_flops_per_token
    from pretrain_cli.training.monitor import format_count, format_flops

    args = parse_args()
    apply_common(args)
    examples = args.examples or build_examples(args)
    upstream = read_manifest(examples, "mask")
    train_set = PairExamples.from_manifest(upstream, "train", upstream.extra["vocab_size"])
    config = bert_config(PRESETS[args.preset], vocab_size=padded_vocab_size(upstream.extra["vocab_size"]),
                         pad_token_id=upstream.extra["special_ids"]["pad"])
    with torch.device("meta"):  # the parameter count without allocating the model
        parameters = sum(p.numel() for p in BertForPreTraining(config).parameters())
    precision = resolved_precision(args.precision, args.device)
    with tempfile.TemporaryDirectory(dir=args.work if args.work.is_dir() else None) as tmp:
        ptk = run_ptk(args, examples, Path(tmp) / "ptk")
        hf = run_hf(args, examples, train_set, Path(tmp) / "hf", config, precision)

    seq = float(train_set.lengths().mean())
    ptk["masked_fraction"] = train_set.masked_fraction()
    peak = peak_flops(torch.device(args.device), precision, args.peak_tflops)
    for side in (ptk, hf):
        side["tokens_per_s"] = side["tokens"] / side["seconds"]
        side["flops_per_token"] = training_flops_per_token(
            layers=config.num_hidden_layers, hidden=config.hidden_size, intermediate=config.intermediate_size,
            vocab_rows=config.vocab_size, seq_len=attention_length(train_set.lengths()),
            masked_fraction=side["masked_fraction"],
            pair_task=upstream.extra.get("objective", "mlm+nsp") != "mlm")
        side["mfu"] = side["tokens_per_s"] * side["flops_per_token"] / peak if peak else None
    ratio = ptk["tokens_per_s"] / hf["tokens_per_s"]

    device = (torch.cuda.get_device_name() if args.device == "cuda"
              else f"CPU, {torch.get_num_threads()} threads")
    if peak:
        peak_text = f"{format_flops(peak)}/s dense {precision}"
    else:
        peak_text = "unknown for this GPU: pass --peak-tflops" if args.device == "cuda" else "n/a on CPU"
    print(f"\nbench_pretrain: {device}; torch {torch.__version__}, transformers {transformers.__version__}")
    global_batch = args.micro_batch_size * args.grad_accum
    print(f"preset {args.preset} ({format_count(parameters)} parameters), max_seq_length "
          f"{args.max_seq_length} (mean {seq:.1f} real tokens), global batch {global_batch} = "
          f"{args.micro_batch_size} micro × {args.grad_accum} accum, {precision}, compile "
          f"{'on' if args.compile else 'off'}, {args.steps} steps ({args.warmup} untimed)")
    print(f"examples {examples}; FLOPs per token {format_flops(ptk['flops_per_token'])} (ptk masking), "
          f"{format_flops(hf['flops_per_token'])} (HF masking); peak {peak_text}")
    print(f"{'engine':<36}{'tokens/s':>12}{'MFU':>9}{'mean loss':>12}")
    for name, side in ((f"ptk ({args.optimizer}, masked-position head)", ptk),
                       ("HF Trainer + MLM collator (adamw)", hf)):
        mfu = f"{side['mfu']:.1%}" if side["mfu"] is not None else "n/a"
        print(f"{name:<36}{side['tokens_per_s']:>12,.0f}{mfu:>9}{side['loss']:>12.3f}")
    caveat = "" if args.optimizer == "adamw" else " (different optimizers: compare engines with adamw)"
    print(f"ratio ptk / HF: {ratio:.2f}×{caveat}")

    if args.json:
        figures = {
            "device": device, "torch": torch.__version__, "transformers": transformers.__version__,
            "preset": args.preset, "parameters": parameters, "max_seq_length": args.max_seq_length,
            "mean_seq_len": seq, "micro_batch_size": args.micro_batch_size, "grad_accum": args.grad_accum,
            "global_batch": global_batch, "precision": precision,
            "compile": args.compile, "optimizer": args.optimizer, "steps": args.steps, "warmup": args.warmup,
            "examples": str(examples), "peak_flops": peak, "ratio": ratio,
            "ptk": {k: ptk[k] for k in ("tokens_per_s", "mfu", "loss", "flops_per_token", "masked_fraction")},
            "hf": {k: hf[k] for k in ("tokens_per_s", "mfu", "loss", "flops_per_token", "masked_fraction")}}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
