"""`ptk pretrain`: masked pair examples → a BERT pretrained with MLM + NSP, in resumable checkpoints.

    ptk pretrain work/examples --out work/ckpt --preset tiny --max-steps 1000
    ptk pretrain work/examples --out work/ckpt-minilm --init sample:minilm --max-steps 200
    tensorboard --logdir work/ckpt/tb

Kill it at any moment and run the same command again: it continues from the newest `step-*`
checkpoint and (on CPU) ends with the same weights, bit for bit, as a run that was never stopped.
`final/` loads with `AutoModelForPreTraining.from_pretrained` and `AutoTokenizer.from_pretrained`.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pretrain_cli.config import StageConfig, option
from pretrain_cli.console import say
from pretrain_cli.errors import UserError
from pretrain_cli.modeling.presets import MAX_POSITIONS, PRESETS, padded_vocab_size
from pretrain_cli.samples import resolve_input
from pretrain_cli.store import Manifest, StageOutput, read_manifest

if TYPE_CHECKING:
    import torch

PRECISIONS = ("auto", "fp32", "bf16")
DEVICES = ("auto", "cpu", "cuda")
FINAL = "final"


@dataclasses.dataclass(kw_only=True)
class PretrainConfig(StageConfig):
    """Pretrain a BERT with MLM + NSP on `ptk mask` examples, in resumable checkpoints."""

    stage: ClassVar[str] = "pretrain"

    # Not hashed: the examples' manifest fingerprint is part of the output's key instead.
    examples: Path = option(help="Directory written by `ptk mask` (pair example shards + tokenizer/).",
                            argument=True, hashed=False)
    out: Path = option(help="Checkpoint directory: step-*/, final/, metrics.jsonl, tb/ and manifest.json.",
                       hashed=False)
    preset: str = option("tiny", f"Model size: {', '.join(PRESETS)} (ignored with --init, whose size wins).")
    init: Path | None = option(None, "Continue pretraining this HF BERT directory (or sample:minilm) instead "
                               "of a fresh model; the examples must use its vocabulary.")
    max_steps: int = option(1000, "Optimizer steps to train.")
    micro_batch_size: int = option(32, "Pairs per forward/backward pass.")
    grad_accum: int = option(1, "Micro-batches per optimizer step (global batch = micro × accum).")
    learning_rate: float = option(5e-4, "Peak AdamW learning rate.")
    weight_decay: float = option(0.01, "AdamW weight decay (biases and LayerNorm are not decayed).")
    warmup_steps: float = option(0.1, "Linear warmup length: steps, or a fraction of --max-steps when "
                                 "below 1; then linear decay to 0 at --max-steps.")
    max_grad_norm: float = option(1.0, "Clip the global gradient norm to this (0: no clipping).")
    seed: int = option(0, "Seed of the initial weights, the dropout, the example order and the masks of "
                          "dynamic examples (0 to 2^32 - 1).")
    precision: str = option("auto", "auto (bf16 autocast on CUDA, fp32 on CPU), fp32 or bf16.")
    save_every: int = option(500, "Write a step-* checkpoint every this many steps.", hashed=False)
    keep_last: int = option(2, "Step checkpoints to keep, newest first (0: keep all).", hashed=False)
    resume: str = option("auto", "auto: continue from the newest step-* in --out; no: start over; or a "
                         "step-* directory to continue from.", hashed=False)
    log_every: int = option(10, "Steps per metrics.jsonl / TensorBoard record.", hashed=False)
    device: str = option("auto", "auto (cuda when available), cpu or cuda.", hashed=False)
    workers: int = option(0, "Processes building batches in the background (0: the training process); "
                          "changes speed only.", hashed=False)

    def problems(self) -> list[str]:
        found = []
        if not 0 <= self.seed < 1 << 32:
            found.append(f"--seed {self.seed} must be between 0 and 2^32 - 1")
        if self.preset not in PRESETS:
            found.append(f"--preset {self.preset!r} is unknown; choose one of {', '.join(PRESETS)}")
        for name in ("max_steps", "micro_batch_size", "grad_accum", "save_every", "log_every"):
            if getattr(self, name) < 1:
                found.append(f"--{name.replace('_', '-')} must be at least 1")
        for name in ("keep_last", "workers", "weight_decay", "warmup_steps", "max_grad_norm"):
            if getattr(self, name) < 0:
                found.append(f"--{name.replace('_', '-')} must be 0 or more")
        if self.learning_rate <= 0:
            found.append("--learning-rate must be above 0")
        if self.precision not in PRECISIONS:
            found.append(f"--precision {self.precision!r} is unknown; choose one of {', '.join(PRECISIONS)}")
        if self.device not in DEVICES:
            found.append(f"--device {self.device!r} is unknown; choose one of {', '.join(DEVICES)}")
        if self.init is not None:
            try:
                init = resolve_input(self.init)
            except UserError as exc:
                found.append(f"--init: {exc}")
            else:
                if not (init / "config.json").is_file():
                    found.append(f"--init {init}: no config.json there; give an HF BERT model directory")
        if self.resume not in ("auto", "no") and not (Path(self.resume) / "trainer_state.json").is_file():
            found.append(f"--resume {self.resume}: not a checkpoint (no trainer_state.json there); give a "
                         f"step-* directory written by `ptk pretrain`, or auto / no")
        return found


@dataclasses.dataclass(frozen=True)
class ExampleFacts:
    """What the mask stage's manifest tells about its examples."""

    vocab_size: int
    tokenizer_sha256: str
    special_ids: dict[str, int]
    max_seq_length: int
    tokenizer_dir: Path


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
                        tokenizer_dir=directory / "tokenizer")


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


def resolve_device(choice: str) -> torch.device:
    import torch

    if choice == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is visible to torch (torch "
                        f"{torch.__version__}); use --device cpu or auto, or install a CUDA build of torch")
    use_cuda = choice == "cuda" or (choice == "auto" and torch.cuda.is_available())
    return torch.device("cuda" if use_cuda else "cpu")


def resolve_precision(choice: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype (None: fp32); auto means bf16 where the GPU has it, fp32 on CPU."""
    import torch

    if choice == "bf16" or (choice == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return None


def run(cfg: PretrainConfig) -> Manifest:
    cfg.validate()
    examples = read_manifest(cfg.examples, "mask")
    facts = examples_facts(examples)
    init = resolve_input(cfg.init) if cfg.init is not None else None
    positions = check_init(init, facts, cfg.examples) if init is not None else MAX_POSITIONS
    if facts.max_seq_length > positions:
        raise UserError(f"{cfg.examples} holds sequences of up to {facts.max_seq_length} tokens, but the "
                        f"model reads at most {positions} positions; rebuild the examples with "
                        f"`ptk mask --max-seq-length {positions}`")
    if cfg.device == "cuda":
        resolve_device(cfg.device)  # before anything is written
    # step-* directories are this stage's too: --force must clear them with the rest
    out = StageOutput(cfg, cfg.out, inputs={"examples": examples},
                      owned=(FINAL, "tb", "metrics.jsonl", "step-*"))
    if (done := out.up_to_date()) is not None:
        return done
    return _train(cfg, examples, facts, init, out)


def _resume_point(cfg: PretrainConfig, out_dir: Path) -> Path | None:
    """The checkpoint to continue from: --resume PATH, unless this run already got further than it."""
    from pretrain_cli.training.checkpoint import read_state, step_checkpoints

    own = step_checkpoints(out_dir)
    if cfg.resume == "no":
        for path in [*own, out_dir / FINAL, out_dir / "tb"]:
            shutil.rmtree(path, ignore_errors=True)
        (out_dir / "metrics.jsonl").unlink(missing_ok=True)
        return None
    newest = own[-1] if own else None
    if cfg.resume == "auto":
        return newest
    given = Path(cfg.resume)
    if newest is not None and read_state(newest)[0].step > read_state(given)[0].step:
        return newest
    return given


def _train(cfg: PretrainConfig, examples: Manifest, facts: ExampleFacts, init: Path | None,
           out: StageOutput) -> Manifest:
    import torch

    from pretrain_cli.modeling.pretraining import build_model
    from pretrain_cli.training.checkpoint import (
        TrainerState,
        load_checkpoint,
        prune,
        remove_partial,
        save_checkpoint,
        step_dir_name,
    )
    from pretrain_cli.training.data import MicroBatches, PairExamples, SampleOrder, loader
    from pretrain_cli.training.loop import LoopSettings, train
    from pretrain_cli.training.monitor import Monitor
    from pretrain_cli.training.schedule import build_optimizer, warmup_steps

    wall_started = time.perf_counter()
    device = resolve_device(cfg.device)
    autocast_dtype = resolve_precision(cfg.precision, device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # the fp32 parts (optimizer, fp32 runs) use TF32
        torch.backends.cudnn.allow_tf32 = True
    out_dir = out.directory
    remove_partial(out_dir)

    train_set = PairExamples.from_manifest(examples, "train", facts.vocab_size, seed=cfg.seed)
    pad_id = int(facts.special_ids["pad"])
    model, fresh = build_model(PRESETS[cfg.preset], vocab_size=facts.vocab_size, pad_token_id=pad_id,
                               init=init, seed=cfg.seed)
    model.to(device)
    if init is not None:
        say(f"pretrain: loaded {init}; freshly initialised: {', '.join(fresh) or 'nothing'}")
    warmup = warmup_steps(cfg.warmup_steps, cfg.max_steps)
    optimizer, scheduler = build_optimizer(model, learning_rate=cfg.learning_rate, warmup=warmup,
                                           weight_decay=cfg.weight_decay, max_steps=cfg.max_steps)
    world_size, rank = 1, 0  # one process until the distributed launcher lands
    samples_per_step = cfg.micro_batch_size * cfg.grad_accum * world_size
    order = SampleOrder(len(train_set), cfg.seed)

    state, start = TrainerState(), _resume_point(cfg, out_dir)
    if start is not None:
        state, cursor = load_checkpoint(start, model, optimizer, scheduler)
        if cursor["num_examples"] != len(train_set) or state.step >= cfg.max_steps:
            raise UserError(f"{start}: made on {cursor['num_examples']} examples up to step {state.step}, "
                            f"but this run has {len(train_set)} examples and --max-steps {cfg.max_steps}; "
                            f"resume it with the examples and options that made it, or pass --resume no")
        say(f"pretrain: resuming from {start} (step {state.step}, epoch {cursor['epoch']}, "
            f"example {cursor['index']})")
    else:
        shutil.rmtree(out_dir / "tb", ignore_errors=True)

    mconf = model.config
    num_parameters = sum(p.numel() for p in model.parameters())
    shape = {"preset": None if init else cfg.preset, "init": str(init) if init else None,
             "layers": mconf.num_hidden_layers, "hidden": mconf.hidden_size,
             "heads": mconf.num_attention_heads, "intermediate": mconf.intermediate_size,
             "max_position_embeddings": mconf.max_position_embeddings}
    resolved = {**cfg.to_dict(), "resolved": {
        "device": str(device), "precision": "bf16" if autocast_dtype else "fp32", "warmup_steps": warmup,
        "global_batch": samples_per_step, "world_size": world_size, "vocab_size": facts.vocab_size,
        "model_vocab_size": mconf.vocab_size, "model": shape}}
    mean_tokens = float(train_set.lengths().mean())
    say(f"pretrain: {shape['layers']}×{shape['hidden']} BERT, {num_parameters:,} parameters, vocab "
        f"{facts.vocab_size} (padded to {mconf.vocab_size}); {device} {resolved['resolved']['precision']}; "
        f"global batch {samples_per_step} = {cfg.micro_batch_size} micro × {cfg.grad_accum} accum × "
        f"{world_size} process(es), ~{mean_tokens * samples_per_step:,.0f} tokens/step; "
        f"{len(train_set):,} train pairs; steps {state.step}→{cfg.max_steps}, lr {cfg.learning_rate:g} "
        f"with {warmup} warmup")

    def cursor_of(state: TrainerState) -> dict[str, int]:
        epoch, index = order.cursor(state.samples)
        return {"epoch": epoch, "index": index, "num_examples": len(train_set)}

    def save_step(state: TrainerState) -> Path:
        path = save_checkpoint(out_dir, step_dir_name(state.step), model=model,
                               tokenizer_dir=facts.tokenizer_dir, config=resolved, state=state,
                               data_cursor=cursor_of(state), optimizer=optimizer, scheduler=scheduler)
        prune(out_dir, cfg.keep_last)
        return path

    batches = MicroBatches(train_set, order, start=state.samples, micro_batch_size=cfg.micro_batch_size,
                           count=(cfg.max_steps - state.step) * cfg.grad_accum, pad_id=pad_id,
                           world_size=world_size, rank=rank)
    settings = LoopSettings(max_steps=cfg.max_steps, grad_accum=cfg.grad_accum,
                            samples_per_step=samples_per_step, max_grad_norm=cfg.max_grad_norm,
                            log_every=cfg.log_every, save_every=cfg.save_every, device=device,
                            autocast_dtype=autocast_dtype)
    monitor = Monitor(out_dir, start_step=state.step, max_steps=cfg.max_steps)
    first_tokens, trained_s = state.tokens, state.elapsed_s
    try:
        state, record = train(model, optimizer, scheduler,
                              iter(loader(batches, workers=cfg.workers, pin_memory=device.type == "cuda")),
                              state=state, settings=settings, monitor=monitor, save=save_step,
                              last_checkpoint=start)
    finally:
        monitor.close()
    assert record is not None  # the last step always logs

    save_checkpoint(out_dir, FINAL, model=model, tokenizer_dir=facts.tokenizer_dir, config=resolved,
                    state=state, data_cursor=cursor_of(state))
    out.record_file(f"{FINAL}/model.safetensors")
    session_s = state.elapsed_s - trained_s
    stats: dict[str, Any] = {
        "steps": state.step, "tokens": state.tokens, "samples": state.samples,
        "epochs": round(state.samples / len(train_set), 3),
        "loss": record["loss"], "mlm_loss": record["mlm_loss"], "nsp_loss": record["nsp_loss"],
        "tokens_per_s": round((state.tokens - first_tokens) / max(session_s, 1e-9), 1),
        "train_s": round(state.elapsed_s, 3), "wall_s": round(time.perf_counter() - wall_started, 3),
        "device": str(device), "resumed_from": str(start) if start else None}
    extra = {"vocab_size": facts.vocab_size, "model_vocab_size": mconf.vocab_size,
             "tokenizer_sha256": facts.tokenizer_sha256, "special_ids": facts.special_ids,
             "max_seq_length": facts.max_seq_length, "model": shape, "num_parameters": num_parameters,
             "freshly_initialised": fresh, "global_batch": samples_per_step,
             "precision": resolved["resolved"]["precision"], "final": FINAL}
    say(f"pretrain: {state.step} steps, {state.tokens:,} tokens, loss {record['loss']:.4f} "
        f"(mlm {record['mlm_loss']:.4f}, nsp {record['nsp_loss']:.4f}), "
        f"{stats['tokens_per_s']:,.0f} tokens/s; model in {out_dir / FINAL}")
    return out.finish(stats=stats, extra=extra)
