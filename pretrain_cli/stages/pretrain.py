"""`ptk pretrain`: `ptk mask` examples → a BERT pretrained with MLM (+ NSP/SOP), in resumable checkpoints.

    ptk pretrain work/examples --out work/ckpt --preset tiny --max-steps 1000
    ptk pretrain work/examples --out work/ckpt-minilm --init sample:minilm --max-steps 200
    ptk pretrain work/examples --out work/ckpt --preset base --gpus 8 --global-batch 4096
    tensorboard --logdir work/ckpt/tb

This module holds the options, the checks that need no model, and the launch: with --gpus/--procs
it re-runs itself as that many torchrun workers; each (or the only) process then trains through
`training.session`. Kill it at any moment and run the same command again: it continues from the
newest good `step-*` checkpoint and (on CPU) ends with the same weights, bit for bit, as a run that
was never stopped. `final/` loads with `AutoModelForPreTraining.from_pretrained`. See docs/pretrain.md.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pretrain_cli.config import StageConfig, option
from pretrain_cli.errors import UserError
from pretrain_cli.modeling.presets import (
    MAX_POSITIONS,
    PRESETS,
    Preset,
    model_shape,
    padded_vocab_size,
    shape_problems,
)
from pretrain_cli.samples import resolve_input
from pretrain_cli.store import Manifest, StageOutput, files_input, read_manifest

if TYPE_CHECKING:
    import torch

FINAL = "final"
BUDGET = re.compile(r"(\d+(?:\.\d+)?)([dhms])")
UNIT_S = {"d": 86400, "h": 3600, "m": 60, "s": 1}
CONTRASTIVE = ("simcse", "mlm+simcse")
SIMCSE_OPTIONS = {"temperature": 0.05, "pooling": "mean", "simcse_weight": 1.0}  # and their defaults


def budget_seconds(text: str) -> float:
    """'8h', '90m', '1h30m', '3600s' → seconds; '' → 0 (no budget); ValueError if malformed."""
    if not text:
        return 0.0
    parts = BUDGET.findall(text)
    if "".join(number + unit for number, unit in parts) != text.replace(" ", ""):
        raise ValueError(text)
    return sum(float(number) * UNIT_S[unit] for number, unit in parts)


@dataclasses.dataclass(kw_only=True)
class PretrainConfig(StageConfig):
    """Pretrain a BERT with MLM (+ NSP or SOP) on `ptk mask` examples, on 1 to many processes."""

    stage: ClassVar[str] = "pretrain"

    # Not hashed: the examples' manifest fingerprint is part of the output's key instead.
    examples: Path = option(help="Directory written by `ptk mask` (pair example shards + tokenizer/).",
                            argument=True, hashed=False)
    out: Path = option(help="Checkpoint directory: step-*/, final/, metrics.jsonl, tb/ and manifest.json.",
                       hashed=False)
    preset: str = option("tiny", f"Model size: {', '.join(PRESETS)} (ignored with --init, whose size wins).")
    layers: int = option(0, "Transformer layers (0: the preset's).")
    hidden: int = option(0, "Hidden width (0: the preset's); heads default to hidden / 64.")
    heads: int = option(0, "Attention heads (0: the preset's, or hidden / 64 with --hidden).")
    intermediate: int = option(0, "Feed-forward width (0: 4 × hidden).")
    dropout: float = option(0.1, "Hidden and attention dropout (BERT 0.1; cramming trains with 0).")
    init: Path | None = option(None, "Continue pretraining this HF BERT directory (or sample:minilm) instead "
                               "of a fresh model; the examples must use its vocabulary.")
    objective: Literal["auto", "mlm", "mlm+nsp", "mlm+sop", "simcse", "mlm+simcse"] = option(
        "auto", "auto (the examples' own), mlm, mlm+nsp or mlm+sop; mlm on pair examples trains without "
                "their NSP/SOP labels; simcse (contrastive sentence embeddings: each example's first "
                "segment, or --pairs) or mlm+simcse (their weighted sum).")
    temperature: float = option(0.05, "SimCSE: the softmax temperature over cosine similarities.")
    pooling: Literal["cls", "mean"] = option(
        "mean", "SimCSE: the sentence vector, the [CLS] token's or the mean over tokens (recorded with "
                "the model; evaluate and export use it).")
    simcse_weight: float = option(1.0, "mlm+simcse: the contrastive loss's weight beside the MLM loss.")
    pairs: Path | None = option(None, "SimCSE: supervised pairs instead of dropout views, a CSV/TSV/JSONL/"
                                "Parquet file with anchor, positive and optionally negative columns.",
                                hashed=False)
    max_steps: int = option(1000, "Optimizer steps to train (with --budget: a cap).")
    budget: str = option("", "Train for this much training time, e.g. 8h, 90m, 1h30m; the learning rate "
                         "follows elapsed time instead of steps (cramming). Not bitwise reproducible.")
    micro_batch_size: int = option(32, "Pairs per forward/backward pass on each process.", hashed=False)
    grad_accum: int = option(1, "Micro-batches per optimizer step (global batch = micro × accum × "
                             "processes); ignored with --global-batch.", hashed=False)
    global_batch: int = option(0, "Pairs per optimizer step; the accumulation becomes global ÷ (micro × "
                               "processes), so a resume on another process count keeps it (0: micro × "
                               "accum × processes; SimCSE's negatives are micro × processes, which a resume "
                               "must keep).", hashed=False)
    optimizer: Literal["adamw", "lamb"] = option(
        "adamw", "adamw (fused on CUDA) or lamb (large batches, as NVIDIA's BERT).")
    learning_rate: float = option(5e-4, "Peak learning rate.")
    weight_decay: float = option(0.01, "Weight decay (biases and LayerNorm are not decayed).")
    schedule: Literal["linear", "cosine", "constant"] = option(
        "linear", "After warmup: linear or cosine decay to 0, or constant.")
    warmup_steps: float = option(0.1, "Warmup: steps, or below 1 a fraction of --max-steps (of the time "
                                 "with --budget, where it must be below 1).")
    max_grad_norm: float = option(1.0, "Clip the global gradient norm to this (0: no clipping).")
    seed: int = option(0, "Seed of the initial weights, the dropout, the example order and the masks of "
                          "dynamic examples (0 to 2^32 - 1).")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = option(
        "auto", "auto (bf16 autocast on CUDA, fp32 on CPU), fp32, bf16, or fp16 "
                            "(autocast with a dynamic loss scaler).")
    compile: bool = option(False, "torch.compile the model (slower start, faster steps on GPUs).")
    gpus: int = option(0, "Processes (one per GPU) on this node, launched through torchrun (0: one "
                       "process, no launcher).", hashed=False)
    procs: int = option(0, "CPU processes on the gloo backend, launched through torchrun (0: one).",
                        hashed=False)
    strategy: Literal["ddp", "fsdp"] = option(
        "ddp", "With several processes: ddp (replicated) or fsdp (sharded weights, "
                           "gradients and optimizer state).", hashed=False)
    nnodes: int = option(1, "Nodes in the job (multi-node: the same command on every node).", hashed=False)
    node_rank: int = option(0, "This node's index, 0 to --nnodes - 1.", hashed=False)
    rdzv_endpoint: str = option("", "host:port where the nodes meet (the first node's address).",
                                hashed=False)
    save_every: int = option(500, "Write a step-* checkpoint every this many steps (0: not by steps).",
                             hashed=False)
    save_every_minutes: float = option(0.0, "Also write one every this many minutes of training (0: off).",
                                       hashed=False)
    keep_last: int = option(2, "Step checkpoints to keep, newest first (0: keep all).", hashed=False)
    resume: str = option("auto", "auto: continue from the newest good step-* in --out; no: start over; or "
                         "a step-* directory to continue from.", hashed=False)
    log_every: int = option(10, "Steps per metrics.jsonl / TensorBoard record.", hashed=False)
    device: Literal["auto", "cpu", "cuda"] = option(
        "auto", "auto (cuda when available), cpu or cuda.", hashed=False)
    workers: int = option(-1, "Processes building batches ahead, pinned (-1: 2 on CUDA, 0 on CPU); "
                          "changes speed only.", hashed=False)
    peak_tflops: float = option(0.0, "Peak dense TFLOP/s of one device for the MFU estimate (0: looked "
                                "up for known GPUs; not shown on CPU).", hashed=False)

    @property
    def world_size(self) -> int:
        """Processes in the run: from the launcher inside one (ours or a user's own torchrun)."""
        from pretrain_cli.training.distributed import in_worker

        if in_worker():
            return int(os.environ["WORLD_SIZE"])
        return max(1, self.gpus or self.procs) * self.nnodes

    @property
    def resolved_global_batch(self) -> int:
        return self.global_batch or self.micro_batch_size * self.grad_accum * self.world_size

    @property
    def accumulation(self) -> int:
        return self.resolved_global_batch // (self.micro_batch_size * self.world_size)

    @property
    def contrastive(self) -> bool:
        return self.objective in CONTRASTIVE

    def hashed_dict(self) -> dict[str, Any]:
        # the global batch, not how it is split over processes and micro-batches, defines the run,
        # so a resume on another number of processes or a smaller micro-batch is the same run;
        # except for SimCSE, whose negatives are the micro-batches of every process
        values = {**super().hashed_dict(), "global_batch": self.resolved_global_batch}
        if self.contrastive:
            values["contrastive_batch"] = self.micro_batch_size * self.world_size
        return values

    def inactive(self) -> tuple[str, ...]:
        return () if self.contrastive else tuple(SIMCSE_OPTIONS)

    def problems(self) -> list[str]:
        found = []
        if not 0 <= self.seed < 1 << 32:
            found.append(f"--seed {self.seed} must be between 0 and 2^32 - 1")
        if self.preset not in PRESETS:
            found.append(f"--preset {self.preset!r} is unknown; choose one of {', '.join(PRESETS)}")
        else:
            found += shape_problems(self.shape)
        for name in ("max_steps", "micro_batch_size", "grad_accum", "log_every"):
            if getattr(self, name) < 1:
                found.append(f"--{name.replace('_', '-')} must be at least 1")
        for name in ("keep_last", "weight_decay", "warmup_steps", "max_grad_norm", "save_every", "gpus",
                     "procs", "global_batch", "save_every_minutes", "peak_tflops", "layers", "hidden",
                     "heads", "intermediate"):
            if getattr(self, name) < 0:
                found.append(f"--{name.replace('_', '-')} must be 0 or more")
        if self.workers < -1:
            found.append("--workers must be -1 (auto) or more")
        if not 0 <= self.dropout < 1:
            found.append("--dropout must be in [0, 1)")
        if self.learning_rate <= 0:
            found.append("--learning-rate must be above 0")
        contrastive = self.contrastive
        if not contrastive:
            found += [f"--{name.replace('_', '-')} goes with --objective simcse or mlm+simcse; add one or "
                      f"drop it" for name, default in SIMCSE_OPTIONS.items()
                      if getattr(self, name) != default]
        if self.temperature <= 0:
            found.append("--temperature must be above 0")
        if self.simcse_weight <= 0:
            found.append("--simcse-weight must be above 0")
        if self.pairs is not None and not contrastive:
            found.append(f"--pairs is for --objective simcse or mlm+simcse, not {self.objective}; add "
                         f"--objective simcse or drop --pairs")
        elif self.pairs is not None and not self.pairs.is_file():
            found.append(f"--pairs {self.pairs}: no such file")
        if contrastive and self.strategy == "fsdp":
            found.append(f"--strategy fsdp: --objective {self.objective} trains under DDP only; pass "
                         f"--strategy ddp")
        try:
            if budget_seconds(self.budget) and self.warmup_steps >= 1:
                found.append("--warmup-steps must be a fraction below 1 with --budget (warmup is a share "
                             "of the time)")
        except ValueError:
            found.append(f"--budget {self.budget!r} is not a duration; write e.g. 8h, 90m, 1h30m or 3600s")
        if self.gpus and self.procs:
            found.append("--gpus and --procs both given; use --gpus on GPUs, --procs on CPU")
        if self.procs and self.device == "cuda":
            found.append("--procs runs CPU processes; use --gpus N for CUDA")
        from pretrain_cli.training.distributed import Launch

        found += Launch(nproc_per_node=max(1, self.gpus or self.procs), nnodes=self.nnodes,
                        node_rank=self.node_rank, rdzv_endpoint=self.rdzv_endpoint).problems()
        if self.save_every == 0 and self.save_every_minutes == 0:
            found.append("--save-every and --save-every-minutes are both 0; set one so the run can resume")
        split = self.micro_batch_size * self.world_size
        if self.global_batch and split and self.global_batch % split:
            found.append(f"--global-batch {self.global_batch} does not divide into micro-batches of "
                         f"{self.micro_batch_size} on {self.world_size} process(es); make it a multiple of "
                         f"{split} or change --micro-batch-size")
        if self.strategy == "fsdp" and self.precision == "fp16":
            found.append("--precision fp16 with --strategy fsdp is not supported; use bf16")
        if self.init is not None:
            try:
                init = resolve_input(self.init)
            except UserError as exc:
                found.append(f"--init: {exc}")
            else:
                if not (init / "config.json").is_file():
                    found.append(f"--init {init}: no config.json there; give an HF BERT model directory")
        if self.resume not in ("auto", "no"):
            given = Path(self.resume)
            if not (given / "trainer_state.json").is_file():
                found.append(f"--resume {self.resume}: not a checkpoint (no trainer_state.json there); give "
                             f"a step-* directory written by `ptk pretrain`, or auto / no")
            elif not (given / "optimizer.pt").is_file():
                found.append(f"--resume {self.resume}: holds no optimizer state (a final/ model); resume "
                             f"from a step-* directory, or continue its weights with --init {self.resume}")
        return found

    @property
    def shape(self) -> Preset:
        return model_shape(self.preset, layers=self.layers, hidden=self.hidden, heads=self.heads,
                           intermediate=self.intermediate)


@dataclasses.dataclass(frozen=True)
class ExampleFacts:
    """What the mask stage's manifest tells about its examples."""

    vocab_size: int
    tokenizer_sha256: str
    special_ids: dict[str, int]
    max_seq_length: int
    tokenizer_dir: Path
    objective: str  # mlm+nsp, mlm+sop or mlm, as `ptk mask` built them


def examples_facts(manifest: Manifest) -> ExampleFacts:
    extra, directory = manifest.extra, Path(manifest.directory or ".")
    missing = [k for k in ("vocab_size", "special_ids", "max_seq_length") if k not in extra]
    if missing:
        raise UserError(f"{directory}/manifest.json has no {', '.join(missing)} in `extra`, so an older or "
                        f"foreign `ptk mask` wrote it; rebuild it with `ptk mask --force`")
    objective = extra.get("objective", "mlm+nsp")
    if objective not in ("mlm+nsp", "mlm+sop", "mlm"):
        raise UserError(f"{directory} holds {objective!r} examples, but `ptk pretrain` trains mlm+nsp, "
                        f"mlm+sop or mlm; rebuild them with this ptk's `ptk mask`")
    if not (directory / "tokenizer").is_dir():
        raise UserError(f"{directory}/tokenizer: missing, so checkpoints would have no tokenizer; rebuild "
                        f"the examples with `ptk mask --force`")
    return ExampleFacts(vocab_size=int(extra["vocab_size"]),
                        tokenizer_sha256=str(extra.get("tokenizer_sha256", "")),
                        special_ids=dict(extra["special_ids"]), max_seq_length=int(extra["max_seq_length"]),
                        tokenizer_dir=directory / "tokenizer", objective=objective)


def training_objective(choice: str, facts: ExampleFacts, examples_dir: Path) -> str:
    """The objective to train: the examples' own, plain MLM on pair examples, or a SimCSE one (which
    reads any examples: its sentences are their first segments)."""
    if choice in ("auto", facts.objective):
        return facts.objective
    if choice in ("mlm", "simcse", "mlm+simcse"):
        return choice
    raise UserError(f"--objective {choice}: {examples_dir} holds {facts.objective} examples; rebuild them "
                    f"with `ptk mask --objective {choice.removeprefix('mlm+')}`, or pass --objective auto")


def tokenizer_vocabulary(directory: Path) -> dict[str, int] | None:
    """token → id of the HF tokenizer saved in `directory` (tokenizer.json or vocab.txt), or None."""
    if (directory / "tokenizer.json").is_file():
        record = json.loads((directory / "tokenizer.json").read_text())
        vocab = record["model"]["vocab"]
        if isinstance(vocab, list):  # Unigram: [[piece, score], ...]
            vocab = {piece: i for i, (piece, _) in enumerate(vocab)}
        return {**vocab, **{t["content"]: t["id"] for t in record.get("added_tokens", [])}}
    if (directory / "vocab.txt").is_file():
        return {token: i for i, token in enumerate(directory.joinpath("vocab.txt").read_text().splitlines())}
    return None


def check_init(init: Path, facts: ExampleFacts, examples_dir: Path) -> int:
    """Refuse an --init whose vocabulary is not the examples'; return its max_position_embeddings."""
    config = json.loads((init / "config.json").read_text())
    if config.get("model_type") != "bert":
        raise UserError(f"--init {init}: a {config.get('model_type')!r} model; `ptk pretrain` continues BERT "
                        f"models only")
    init_rows = int(config["vocab_size"])
    theirs, ours = tokenizer_vocabulary(init), tokenizer_vocabulary(facts.tokenizer_dir)
    if theirs is not None:
        same = theirs == ours
        init_desc = f"a {len(theirs)}-token vocabulary"
    else:  # weights without tokenizer files: the row count is all there is to compare
        same = init_rows in (facts.vocab_size, padded_vocab_size(facts.vocab_size))
        init_desc = f"{init_rows} embedding rows"
    if not same or init_rows < facts.vocab_size:
        sha = facts.tokenizer_sha256[:12] or "unknown"
        raise UserError(f"{examples_dir} was tokenized with a {facts.vocab_size}-token vocabulary (tokenizer "
                        f"sha256 {sha}), but --init {init} has {init_desc} that differs; re-tokenize with "
                        f"`ptk tokenize --tokenizer {init}` and rebuild the examples")
    return int(config.get("max_position_embeddings", MAX_POSITIONS))


def resolve_device(choice: str, local_rank: int = 0) -> torch.device:
    import torch

    if choice == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is visible to torch (torch "
                        f"{torch.__version__}); use --device cpu or auto, or install a CUDA build of torch")
    use_cuda = choice == "cuda" or (choice == "auto" and torch.cuda.is_available())
    return torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")


def resolve_precision(choice: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype (None: fp32); auto means bf16 where the GPU has it, fp32 on CPU."""
    import torch

    if choice == "fp16":
        return torch.float16
    has_bf16 = device.type != "cuda" or torch.cuda.is_bf16_supported(including_emulation=False)
    if choice == "bf16" and not has_bf16:
        raise UserError(f"--precision bf16: {torch.cuda.get_device_name(device)} has no bf16 arithmetic; "
                        f"use --precision fp16 (with a loss scaler) or fp32")
    if choice == "bf16" or (choice == "auto" and device.type == "cuda" and has_bf16):
        return torch.bfloat16
    return None


def _check_processes(cfg: PretrainConfig) -> None:
    """--gpus against what this node has, before anything is launched."""
    from pretrain_cli.training.distributed import visible_gpus

    if cfg.gpus:
        visible = visible_gpus()
        if cfg.gpus > visible:
            raise UserError(f"--gpus {cfg.gpus}: only {visible} CUDA device(s) visible on this node; pass "
                            f"--gpus {visible}" + (" or use --procs N on CPU" if not visible else ""))
        if cfg.device == "cpu":
            raise UserError("--gpus with --device cpu; use --procs N for CPU processes")


def run(cfg: PretrainConfig) -> Manifest:
    """Train in this process, or launch `--gpus/--procs` processes that each run this same function."""
    from pretrain_cli.training.distributed import Launch, in_worker, launch

    cfg.validate()
    examples = read_manifest(cfg.examples, "mask")
    facts = examples_facts(examples)
    objective = training_objective(cfg.objective, facts, cfg.examples)
    init = resolve_input(cfg.init) if cfg.init is not None else None
    positions = check_init(init, facts, cfg.examples) if init is not None else MAX_POSITIONS
    if facts.max_seq_length > positions:
        raise UserError(f"{cfg.examples} holds sequences of up to {facts.max_seq_length} tokens, but the "
                        f"model reads at most {positions} positions; rebuild the examples with "
                        f"`ptk mask --max-seq-length {positions}`")
    if cfg.device == "cuda":
        resolve_device(cfg.device)  # before anything is written
    worker = in_worker()
    if not worker:
        _check_processes(cfg)
    # step-* directories are this stage's too: --force must clear them with the rest
    inputs = {"examples": examples}
    if cfg.pairs is not None:  # their content, not their path, is part of what the run is
        from pretrain_cli.training.pairs import read_pairs

        if not worker:  # a malformed record stops the run here, before anything is written
            count = len(read_pairs(cfg.pairs)[1][0])
            if count < cfg.micro_batch_size * cfg.world_size:  # every batch would repeat pairs
                raise UserError(f"--pairs {cfg.pairs}: {count} pairs, fewer than one contrastive batch "
                                f"({cfg.micro_batch_size} × {cfg.world_size} process(es)); add pairs or "
                                f"lower --micro-batch-size")
        inputs["pairs"] = files_input("pairs", [cfg.pairs])
    out = StageOutput(cfg, cfg.out, inputs=inputs,
                      owned=(FINAL, "tb", "metrics.jsonl", "step-*", "corrupt-step-*"))
    if worker or cfg.world_size == 1:
        from pretrain_cli.training.session import train_session

        return train_session(cfg, examples, facts, objective, init, out)
    # on a shared file system node 0 prepares --out (rank 0 checks it again before training); the
    # others only look, so a finished job is not relaunched to wait for a node 0 that never comes
    if (done := out.up_to_date() if cfg.node_rank == 0 else out.finished()) is not None:
        return done
    procs = cfg.gpus or cfg.procs
    launch(Launch(nproc_per_node=procs, nnodes=cfg.nnodes, node_rank=cfg.node_rank,
                  rdzv_endpoint=cfg.rdzv_endpoint), cfg.to_dict())
    return read_manifest(cfg.out, "pretrain")
