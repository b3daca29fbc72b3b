"""Time per step and peak memory of every fine-tuning method next to full fine-tuning, one run.

    python scripts/bench_finetune.py                                   # MiniLM, rotten_tomatoes, CPU
    python scripts/bench_finetune.py --device cuda --preset base --max-seq-length 128 \
        --json work/bench/finetune-gpu.json             # a BERT-base-sized model, random weights

Every method trains the same model (default: the shipped MiniLM-L6-H384) on the same batches of
the same task (the first --steps length-grouped batches of rotten_tomatoes' train split, seed 0),
through ptk's own path (`modeling.methods.prepare`, the loss and optimizer step of `ptk finetune`),
each in a fresh process so that one method's memory cannot hide another's. `--preset NAME` trains a
randomly initialised model of that ptk preset with --model's tokenizer instead (time and memory do
not depend on the weights' values), and `--task` takes a CSV as `ptk finetune` does. Time per step is the
mean over the steps after --warmup. Peak memory: on CUDA the peak of allocated tensor memory
(`torch.cuda.max_memory_allocated`), on CPU the process's peak resident set size (ru_maxrss) and
its rise over the resident size with the model loaded, which is what training added (activations,
gradients, optimizer state). The peer here is full fine-tuning: every ratio is method ÷ full.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")



def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="sample:minilm", help="BERT model directory or sample:minilm")
    parser.add_argument("--preset", help="a ptk model preset with random weights instead of --model's")
    parser.add_argument("--task", default="rotten_tomatoes", help="a ptk task name or a CSV (text,label)")
    from pretrain_cli.modeling.methods import METHODS

    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated; full is always run")
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps per method")
    parser.add_argument("--warmup", type=int, default=5, help="first steps left out of the timing")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-seq-length", type=int, default=64)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure this method in this process
    parser.add_argument("--scratch", help=argparse.SUPPRESS)  # internal: where a --preset model goes
    return parser.parse_args(argv)


def resident_kib() -> int:
    """The current resident set size in KiB (Linux /proc; ru_maxrss is the same unit there)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def random_model(preset: str, tokenizer_dir: Path, out: Path) -> Path:
    """A freshly initialised BERT of `preset` with `tokenizer_dir`'s tokenizer, saved in `out`."""
    import torch
    from transformers import AutoTokenizer, BertForPreTraining

    from pretrain_cli.modeling.presets import PRESETS, bert_config, padded_vocab_size

    if (out / "config.json").is_file():  # built by the first method's process
        return out
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    config = bert_config(PRESETS[preset], vocab_size=padded_vocab_size(len(tokenizer)),
                         pad_token_id=tokenizer.pad_token_id)
    BertForPreTraining(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def measure(args: argparse.Namespace, method: str) -> dict[str, Any]:
    """Train `method` for --steps on fixed batches in this process; time and memory figures."""
    import random
    import resource
    import time

    import torch

    from pretrain_cli.modeling.finetuned import build_model, load_tokenizer
    from pretrain_cli.modeling.methods import MethodConfig, count_parameters, prepare
    from pretrain_cli.samples import resolve_input
    from pretrain_cli.stages.finetune import DEFAULT_LR
    from pretrain_cli.tasks import TaskSource, load_task
    from pretrain_cli.tasks.encode import collate, encode, train_batches
    from pretrain_cli.training.finetune_loop import MAX_GRAD_NORM, WEIGHT_DECAY, loss_of
    from pretrain_cli.training.schedule import build_optimizer

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model_dir = resolve_input(args.model)
    if args.preset:
        model_dir = random_model(args.preset, model_dir, Path(args.scratch) / "model")
    task = load_task(TaskSource(task=args.task))
    tokenizer = load_tokenizer(model_dir, args.max_seq_length,
                               virtual_tokens=MethodConfig(name=method).virtual_positions)
    train = encode(tokenizer, task.train, task.kind, args.max_seq_length)
    batches = train_batches(train.lengths, args.batch_size, random.Random(0))[:args.steps]
    model = build_model(model_dir, task.kind, task.labels, random_init=False, seed=0)
    ft = prepare(model, MethodConfig(name=method, total_steps=args.steps), task.kind)
    ft.model.to(device).train()
    trainable, total = count_parameters(ft.model)
    params = list(ft.trainable().values())
    optimizer = build_optimizer(ft.model, name="adamw", learning_rate=DEFAULT_LR[method],
                                weight_decay=WEIGHT_DECAY)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    loaded_kib = resident_kib()
    times = []
    for step, indices in enumerate(batches):
        batch = {k: v.to(device) for k, v in collate(train, indices, tokenizer.pad_token_id).items()}
        started = time.perf_counter()
        loss = loss_of(task.kind, ft.logits(batch), batch["labels"]) + ft.regularisation()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
        optimizer.step()
        ft.after_backward(step)
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    timed = times[args.warmup:]
    tokens = sum(len(train.input_ids[i]) for indices in batches[args.warmup:] for i in indices)
    figures = {"method": method, "trainable_params": trainable, "total_params": total,
               "trainable_share": trainable / total, "ms_per_step": 1000 * sum(timed) / len(timed),
               "tokens_per_s": tokens / sum(timed), "final_loss": float(loss)}
    if device.type == "cuda":
        figures["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        figures |= {"peak_mib": peak_kib / 1024, "training_mib": max(0, peak_kib - loaded_kib) / 1024}
    return figures


def main() -> None:
    args = parse_args()
    if args.one:
        print(json.dumps(measure(args, args.one)))
        return
    methods = ["full", *(m for m in args.methods.split(",") if m and m != "full")]
    rows = []
    scratch = tempfile.mkdtemp(prefix="bench-finetune-")
    for method in methods:
        # a fresh process per method: peak memory is a high-water mark that never comes down
        command = [sys.executable, __file__, *sys.argv[1:], "--one", method, "--scratch", scratch]
        child = subprocess.run(command, capture_output=True, text=True)
        if child.returncode != 0:
            sys.exit(f"bench_finetune: {method} failed:\n{child.stderr[-3000:]}")
        rows.append(json.loads(child.stdout.strip().splitlines()[-1]))
        print(f"  {method}: {rows[-1]['ms_per_step']:.1f} ms/step", file=sys.stderr)
    shutil.rmtree(scratch, ignore_errors=True)

    import torch

    full = rows[0]
    memory = "peak MiB" if args.device == "cuda" else "training MiB (peak RSS)"
    threads = torch.get_num_threads()
    where = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {threads} threads"
    model = f"random {args.preset} with {args.model}'s tokenizer" if args.preset else args.model
    print(f"\nbench_finetune: {model} on {args.task}, batch {args.batch_size}, max_seq_length "
          f"{args.max_seq_length}, {args.steps} steps ({args.warmup} untimed), {where}; "
          f"torch {torch.__version__}")
    print(f"{'method':<9} {'trainable':>12} {'share':>8} {'ms/step':>9} {'× full':>7} {memory:>24} "
          f"{'× full':>7}")
    for row in rows:
        held = row.get("training_mib", row["peak_mib"])
        full_held = full.get("training_mib", full["peak_mib"])
        shown = (f"{held:,.0f} ({row['peak_mib']:,.0f})" if "training_mib" in row else f"{held:,.0f}")
        print(f"{row['method']:<9} {row['trainable_params']:>12,} {row['trainable_share']:>8.2%} "
              f"{row['ms_per_step']:>9.1f} {row['ms_per_step'] / full['ms_per_step']:>7.2f} {shown:>24} "
              f"{held / max(full_held, 1e-9):>7.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        options = {k: str(v) for k, v in vars(args).items() if k != "one"}
        record = {"args": options, "device": where, "torch": torch.__version__, "rows": rows}
        args.json.write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
