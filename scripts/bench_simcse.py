"""SimCSE training throughput of `ptk pretrain --objective simcse` next to sentence-transformers, one run.

    python scripts/bench_simcse.py                                    # MiniLM, CPU, ~3-4 minutes
    python scripts/bench_simcse.py --device cuda --micro-batch-size 128 --steps 200 --warmup 10 \
        --precision bf16 --json work/bench/simcse-h100.json

Both sides continue the same encoder (--init, default the shipped all-MiniLM-L6-v2) with
unsupervised SimCSE on the same sentences in the same batches: ptk trains on the first segment
(`[CLS] A [SEP]`, unmasked) of each `ptk mask` example, in its own seeded order; the peer gets
exactly those sentences, decoded from ptk's token ids (skip_special_tokens) and fed as text, since
text is what a sentence-transformers user has, and its own tokenizer (the same vocabulary) turns
them back into tokens. The peer trains as its documentation teaches unsupervised SimCSE:
`SentenceTransformerTrainer` on a `datasets.Dataset` of (sentence, sentence) pairs with
`MultipleNegativesRankingLoss` (scale 1 / --temperature = 20), read in order rather than shuffled
so that step s holds ptk's step-s sentences. Examples are built from the wiki summaries sample with
the MiniLM sample's bert-base-uncased vocabulary unless --examples is given.

Both: same batch, learning rate, linear schedule with the same warmup steps, weight decay 0.01,
AdamW eps 1e-6, clipping at 1.0, dropout 0.1 (the positives' only augmentation), seed 0, SDPA
attention, the same pooling (--pooling, mean by default) and temperature; fp32 on CPU, and on CUDA
--precision (auto: bf16 where the GPU has it; HF `bf16=True`) with TF32 for fp32 matmuls.
Throughput counts the steps after --warmup: sentences/s (anchors per second, the same on both
sides per step, so their ratio is the ratio of step times) and real (unpadded) tokens/s, every
pass counted (each sentence is encoded twice, once per dropout view). ptk's figures come from its
own metrics.jsonl (tokens and training clock at each step); the peer's from a step-end callback
and the tokens its collator actually produced.

What differs, by design of each library:
- ptk scores projected vectors: a dense + tanh head (hidden × hidden, freshly initialised, used in
  training only) sits between pooling and the loss, as in the SimCSE paper; sentence-transformers
  has no head by default and scores the pooled vectors themselves. The MiniLM sample was already
  trained contrastively, so the peer starts from a low loss while ptk's fresh head starts higher:
  compare the losses' range, not their values.
- ptk encodes both views in one forward pass of 2B rows; sentence-transformers 6 merges its two
  columns into one pass too (columns that tokenize alike), so both run one encoder pass per step.
- ptk's embedding matrix is padded to a multiple of 8 rows (30522 → 30528); the peer keeps 30522.
- Each side keeps its optimizer implementation: ptk's torch AdamW (fused on CUDA only), the HF
  Trainer's default (`adamw_torch_fused`, also on CPU). HF's warmup starts at rate 0, ptk's first
  step at peak / warmup.
- The peer re-tokenizes decoded text, so its token counts can differ slightly from ptk's (both are
  printed); sentences/s is the like-for-like figure.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bench_pretrain import apply_common, build_examples, step_clock  # noqa: E402  (scripts/ is on the path of a script run from it)

SEED = 0
DROPOUT = 0.1  # ptk's default, and BERT's; also the MiniLM's own


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--init", default="sample:minilm", help="BERT model directory both sides continue")
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps per side")
    parser.add_argument("--warmup", type=int, default=3, help="first steps left out of the timing")
    parser.add_argument("--micro-batch-size", type=int, default=32, help="sentences per step (both sides)")
    parser.add_argument("--learning-rate", type=float, default=3e-5,
                        help="peak rate (SimCSE's for BERT-base)")
    parser.add_argument("--temperature", type=float, default=0.05, help="ptk's; the peer's scale is 1/this")
    parser.add_argument("--pooling", choices=("mean", "cls"), default="mean", help="both sides")
    parser.add_argument("--max-seq-length", type=int, default=64, help="of the built pair examples")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="both sides; auto: bf16 on a CUDA GPU that has it, else fp32")
    parser.add_argument("--examples", type=Path, help="existing `ptk mask` output (default: build one)")
    parser.add_argument("--articles", type=int, default=1500, help="wiki summaries used to build examples")
    parser.add_argument("--work", type=Path, default=Path("work/bench"), help="where built examples go")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    return parser.parse_args()


def warmup_steps(steps: int) -> int:
    """ptk's default warmup (10% of the steps), as a step count both sides are given."""
    from pretrain_cli.training.schedule import warmup_steps as fraction_to_steps

    return fraction_to_steps(0.1, steps)


def ptk_sentences(args: argparse.Namespace, examples: Path) -> tuple[list[list[int]], int]:
    """The first segments ptk trains on, step after step, read through ptk's own batching (one
    process, no accumulation, as `run_ptk` trains); and the token count of one encoding of them."""
    from pretrain_cli.store import read_manifest
    from pretrain_cli.training.data import ContrastSource, MicroBatches, PairExamples, SampleOrder

    upstream = read_manifest(examples, "mask")
    train_set = PairExamples.from_manifest(upstream, "train", upstream.extra["vocab_size"], seed=SEED)
    batches = MicroBatches(train_set, SampleOrder(len(train_set), SEED), start=0,
                           micro_batch_size=args.micro_batch_size, accum=1, steps=args.steps,
                           pad_id=int(upstream.extra["special_ids"]["pad"]),
                           contrast=ContrastSource(mlm=False))
    rows: list[list[int]] = []
    for k in range(len(batches)):
        batch = batches[k]
        for ids, mask in zip(batch.contrast_ids, batch.contrast_mask, strict=True):
            rows.append(ids[mask.bool()].tolist())
    return rows, sum(len(r) for r in rows)


def run_ptk(args: argparse.Namespace, examples: Path, out: Path, warmup: int) -> dict[str, float]:
    from pretrain_cli.stages.pretrain import PretrainConfig, run

    run(PretrainConfig(examples=examples, out=out, init=Path(args.init), objective="simcse",
                       pooling=args.pooling, temperature=args.temperature, dropout=DROPOUT,
                       max_steps=args.steps, micro_batch_size=args.micro_batch_size,
                       learning_rate=args.learning_rate, warmup_steps=float(warmup), device=args.device,
                       precision=args.precision, seed=SEED, save_every=args.steps + 1, log_every=1))
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().split("\n") if line]
    first, last = records[args.warmup - 1], records[-1]
    return {"tokens": last["tokens"] - first["tokens"], "seconds": last["elapsed_s"] - first["elapsed_s"],
            "final_loss": last["simcse_loss"],
            "mean_loss": sum(r["simcse_loss"] for r in records) / len(records)}


def run_peer(args: argparse.Namespace, init: Path, texts: list[str], out: Path, warmup: int,
             precision: str) -> dict[str, float]:
    import torch
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers import SentenceTransformerTrainingArguments as TrainingArguments
    from sentence_transformers.base.sampler import DefaultBatchSampler
    from sentence_transformers.sentence_transformer.data_collator import SentenceTransformerDataCollator
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from torch.utils.data import SequentialSampler
    from transformers import PrinterCallback

    batch_tokens: list[int] = []  # real tokens of each batch, in the order the collator builds them

    class CountingCollator(SentenceTransformerDataCollator):
        # the loader runs one batch ahead of the step, so tokens are kept per batch, not as a
        # running total read at step ends (which would be off by that batch)
        def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
            batch = super().__call__(features)
            batch_tokens.append(sum(int(v.sum()) for k, v in batch.items() if k.endswith("attention_mask")))
            return batch

    class CountingTrainer(SentenceTransformerTrainer):
        data_collator_class = CountingCollator

    marks: list[float] = []

    def in_order(dataset: Any, batch_size: int, drop_last: bool, valid_label_columns: list[str] | None = None,
                 generator: torch.Generator | None = None, seed: int = 0) -> DefaultBatchSampler:
        """Rows in dataset order: the dataset is ptk's stream, one step's sentences after another."""
        return DefaultBatchSampler(SequentialSampler(dataset), batch_size=batch_size, drop_last=drop_last,
                                   valid_label_columns=valid_label_columns, generator=generator, seed=seed)

    torch.manual_seed(SEED)
    transformer = Transformer(str(init), processor_kwargs={"model_max_length": args.max_seq_length},
                              model_kwargs={"attn_implementation": "sdpa", "dtype": torch.float32},
                              config_kwargs={"hidden_dropout_prob": DROPOUT,
                                             "attention_probs_dropout_prob": DROPOUT})
    model = SentenceTransformer(modules=[transformer, Pooling(transformer.get_embedding_dimension(),
                                                              args.pooling)], device=args.device)
    training = TrainingArguments(
        output_dir=str(out), max_steps=args.steps, per_device_train_batch_size=args.micro_batch_size,
        learning_rate=args.learning_rate, weight_decay=0.01, warmup_steps=warmup, adam_epsilon=1e-6,
        max_grad_norm=1.0, lr_scheduler_type="linear", bf16=precision == "bf16",
        # ptk's fp32 matmuls on CUDA are TF32 too, where the GPU has it (Ampere on)
        tf32=args.device == "cuda" and torch.cuda.get_device_capability()[0] >= 8 or None,
        use_cpu=args.device == "cpu", save_strategy="no", eval_strategy="no", logging_steps=1,
        report_to="none", disable_tqdm=True, dataloader_num_workers=0, seed=SEED, batch_sampler=in_order)
    trainer = CountingTrainer(model=model, args=training,
                              train_dataset=Dataset.from_dict({"anchor": texts, "positive": texts}),
                              loss=MultipleNegativesRankingLoss(model, scale=1 / args.temperature),
                              callbacks=[step_clock()(args.device, marks)])
    trainer.remove_callback(PrinterCallback)  # its per-step log lines; the losses are read from the state
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return {"tokens": sum(batch_tokens[args.warmup:args.steps]),
            "seconds": marks[-1] - marks[args.warmup - 1],
            "final_loss": losses[-1], "mean_loss": sum(losses) / len(losses)}


def main() -> None:
    import sentence_transformers
    import torch
    import transformers
    from transformers import AutoTokenizer, BertConfig, BertModel

    from pretrain_cli.errors import UserError
    from pretrain_cli.samples import resolve_input
    from pretrain_cli.stages.pretrain import resolve_precision

    args = parse_args()
    apply_common(args)
    try:
        init = resolve_input(args.init)
        examples = args.examples or build_examples(args)
        precision = {None: "fp32", torch.bfloat16: "bf16"}[resolve_precision(args.precision,
                                                                             torch.device(args.device))]
        rows, sentence_tokens = ptk_sentences(args, examples)
        # the examples' own tokenizer (ptk checks it is --init's vocabulary before training)
        tokenizer = AutoTokenizer.from_pretrained(str(examples / "tokenizer"))
        texts = tokenizer.batch_decode(rows, skip_special_tokens=True)
        warmup = warmup_steps(args.steps)
        with tempfile.TemporaryDirectory(dir=args.work if args.work.is_dir() else None) as tmp:
            ptk = run_ptk(args, examples, Path(tmp) / "ptk", warmup)
            peer = run_peer(args, init, texts, Path(tmp) / "peer", warmup, precision)
    except UserError as exc:
        raise SystemExit(f"bench_simcse: {exc}") from None

    timed_sentences = (args.steps - args.warmup) * args.micro_batch_size
    for side in (ptk, peer):
        side["sentences_per_s"] = timed_sentences / side["seconds"]
        side["tokens_per_s"] = side["tokens"] / side["seconds"]
    ratio = ptk["sentences_per_s"] / peer["sentences_per_s"]
    token_ratio = ptk["tokens_per_s"] / peer["tokens_per_s"]
    config = BertConfig.from_pretrained(init)
    with torch.device("meta"):  # the encoder's parameter count without allocating it
        parameters = sum(p.numel() for p in BertModel(config, add_pooling_layer=False).parameters())

    device = (torch.cuda.get_device_name() if args.device == "cuda"
              else f"CPU, {torch.get_num_threads()} threads")
    print(f"\nbench_simcse: {device}; torch {torch.__version__}, transformers {transformers.__version__}, "
          f"sentence-transformers {sentence_transformers.__version__}")
    print(f"model {args.init} ({config.num_hidden_layers}×{config.hidden_size} BERT, {parameters / 1e6:.1f}M "
          f"encoder parameters), {args.pooling} pooling, temperature {args.temperature:g}, "
          f"dropout {DROPOUT:g}")
    print(f"batch {args.micro_batch_size} sentences (each encoded twice), {args.steps} steps ({args.warmup} "
          f"untimed), lr {args.learning_rate:g} with {warmup} warmup steps, {precision}")
    print(f"examples {examples}: first segments of up to {args.max_seq_length}-token pairs, "
          f"{sentence_tokens / len(rows):.1f} tokens on average")
    print(f"{'engine':<44}{'sentences/s':>13}{'tokens/s':>11}{'final loss':>12}{'mean loss':>12}")
    for name, side in (("ptk pretrain --objective simcse (+ head)", ptk),
                       ("sentence-transformers MNRL (no head)", peer)):
        print(f"{name:<44}{side['sentences_per_s']:>13,.1f}{side['tokens_per_s']:>11,.0f}"
              f"{side['final_loss']:>12.4g}{side['mean_loss']:>12.4g}")
    print(f"ratio ptk / sentence-transformers: {ratio:.2f}× (sentences/s; tokens/s {token_ratio:.2f}×, "
          f"the peer re-tokenizes decoded text)")

    if args.json:
        figures = {
            "device": device, "torch": torch.__version__, "transformers": transformers.__version__,
            "sentence_transformers": sentence_transformers.__version__, "init": args.init,
            "parameters": parameters, "pooling": args.pooling, "temperature": args.temperature,
            "dropout": DROPOUT, "micro_batch_size": args.micro_batch_size, "steps": args.steps,
            "warmup": args.warmup, "learning_rate": args.learning_rate, "lr_warmup_steps": warmup,
            "precision": precision, "max_seq_length": args.max_seq_length, "examples": str(examples),
            "mean_sentence_tokens": sentence_tokens / len(rows), "ratio": ratio, "token_ratio": token_ratio,
            "ptk": {k: ptk[k] for k in ("sentences_per_s", "tokens_per_s", "final_loss", "mean_loss")},
            "peer": {k: peer[k] for k in ("sentences_per_s", "tokens_per_s", "final_loss", "mean_loss")}}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
