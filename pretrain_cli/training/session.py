"""One process's share of `ptk pretrain`: build, restore, train, save; the same code for 1 or N processes.

    manifest = train_session(cfg, examples, facts, "mlm+nsp", init=None, out=StageOutput(...))

Process 0 owns the output directory (the up-to-date check, checkpoints, logs, manifest); every
process builds the same model from the same seed, reads its own slice of each step's examples,
and restores the same checkpoint, which process 0 chooses (falling back past damaged ones).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pretrain_cli.console import say
from pretrain_cli.errors import UserError
from pretrain_cli.modeling.pretraining import Contrastive, PretrainingLoss, batch_inputs, build_model
from pretrain_cli.stages.pretrain import (
    FINAL,
    ExampleFacts,
    PretrainConfig,
    budget_seconds,
    resolve_device,
    resolve_precision,
)
from pretrain_cli.store import Manifest, StageOutput
from pretrain_cli.training import distributed
from pretrain_cli.training.checkpoint import (
    Loaded,
    TrainerState,
    capture_rng,
    checkpoint_damage,
    load_checkpoint,
    newest_good_checkpoint,
    prune,
    read_state,
    remove_partial,
    restore_rng,
    save_checkpoint,
    step_checkpoints,
    step_dir_name,
)
from pretrain_cli.training.data import (
    Batch,
    ContrastSource,
    MicroBatches,
    PairExamples,
    SampleOrder,
    loader,
)
from pretrain_cli.training.distributed import Dist
from pretrain_cli.training.flops import attention_length, peak_flops, training_flops_per_token
from pretrain_cli.training.loop import Engine, LoopSettings, train
from pretrain_cli.training.monitor import Monitor, format_count, format_flops, loss_parts, print_summary
from pretrain_cli.training.pairs import ContrastPairs
from pretrain_cli.training.parallel import full_state, load_full_state, sync_gradients, wrap
from pretrain_cli.training.schedule import LrSchedule, build_optimizer, warmup_steps


def _on_main(dist: Dist, action: Any) -> Any:
    """Run `action()` on process 0 and hand its result (or its UserError) to every process."""
    result, error = None, None
    if dist.is_main:
        try:
            result = action()
        except UserError as exc:
            error = str(exc)
    result, error = distributed.broadcast_object((result, error))
    if error is not None:
        raise UserError(error)
    return result


def _resume_point(cfg: PretrainConfig, out_dir: Path) -> Path | None:
    """(Process 0) the checkpoint to continue from: --resume PATH unless this run got further."""
    if cfg.resume == "no":
        for path in [*step_checkpoints(out_dir), out_dir / FINAL, out_dir / "tb"]:
            shutil.rmtree(path, ignore_errors=True)
        (out_dir / "metrics.jsonl").unlink(missing_ok=True)
        return None
    newest = newest_good_checkpoint(out_dir)
    if cfg.resume == "auto":
        return newest
    given = Path(cfg.resume)
    if newest is not None and read_state(newest)[0].step > read_state(given)[0].step:
        return newest
    if (damage := checkpoint_damage(given)) is not None:
        raise UserError(f"--resume {given}: damaged after it was written ({damage}); resume from an older "
                        f"checkpoint, or pass --resume no")
    return given


def _rank_seed(seed: int, rank: int, step: int) -> int:
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1)[0])


def _restore(loaded: Loaded, engine: Engine, dist: Dist, seed: int) -> None:
    load_full_state(engine.loss_model, engine.wrapped, engine.optimizer, loaded.weights,
                    loaded.training["optimizer"])
    if loaded.training.get("scaler"):
        engine.scaler.load_state_dict(loaded.training["scaler"])
    if len(loaded.rng) == dist.world_size:
        restore_rng(loaded.rng[dist.rank])
    else:  # another process count: the sample order continues exactly, dropout draws cannot
        torch.manual_seed(_rank_seed(seed, dist.rank, loaded.state.step))
        if dist.is_main:
            say(f"pretrain: {loaded.path} was saved by {len(loaded.rng)} process(es), this run has "
                f"{dist.world_size}; the examples continue in the same order, dropout from fresh seeds")


def _check_shape(start: Path, model: torch.nn.Module) -> None:
    """Refuse a checkpoint of another shape (another --preset or shape flag) in one line, before its
    weights fail to load into this model."""
    keys = ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size", "vocab_size")
    saved = json.loads((start / "config.json").read_text())
    theirs, ours = ({k: c.get(k) for k in keys} for c in (saved, model.config.to_dict()))
    if theirs != ours:
        def describe(c: dict[str, Any]) -> str:
            return (f"{c['num_hidden_layers']}×{c['hidden_size']} ({c['num_attention_heads']} heads, ffn "
                    f"{c['intermediate_size']}, {c['vocab_size']} embedding rows)")

        raise UserError(f"--resume {start}: a {describe(theirs)} model, but this run builds "
                        f"{describe(ours)}; pass the --preset / --layers / --hidden / --heads / "
                        f"--intermediate that made it, or --resume no")


def _oom(cfg: PretrainConfig, device: torch.device, width: int) -> UserError:
    memory = torch.cuda.get_device_properties(device).total_memory / 2**30
    return UserError(f"--micro-batch-size {cfg.micro_batch_size} does not fit in the GPU's {memory:.0f} GiB "
                     f"at {width} tokens; halve it and double --grad-accum (or set --global-batch) to keep "
                     f"the same run")


def probe_batch(train_set: PairExamples, contrast: ContrastSource | None, micro: int, pad_id: int) -> Batch:
    """A micro-batch of the longest examples (and, with pairs, the longest pairs): the most memory
    a step can ask for."""
    longest = np.argsort(train_set.lengths(), kind="stable")[-micro:]
    batch = train_set.collate(longest, pad_id, pad_multiple=8,
                              segments=contrast is not None and contrast.pairs is None)
    if contrast is None or contrast.pairs is None:
        return batch
    lengths = sum(np.diff(offsets) for _, offsets in contrast.pairs.views)
    ids, mask = contrast.pairs.collate(np.argsort(lengths, kind="stable")[-micro:], pad_id, pad_multiple=8)
    return dataclasses.replace(batch, contrast_ids=torch.from_numpy(ids),
                               contrast_mask=torch.from_numpy(mask), anchors=micro)


def _probe_memory(engine: Engine, batch: Batch, cfg: PretrainConfig, device: torch.device,
                  autocast_dtype: torch.dtype | None) -> None:
    """On CUDA, one forward/backward on the longest examples, so a micro-batch that cannot fit fails
    now, with advice, instead of after hours; the weights, optimizer and RNG are left untouched.

    Gradients synchronise as in a real step (every process probes), so FSDP keeps no unsynced
    gradients behind that zero_grad could not reach.
    """
    if device.type != "cuda":
        return
    batch = batch.to(device)
    try:
        with torch.random.fork_rng(devices=[device]), sync_gradients(engine.wrapped, True), \
                torch.autocast("cuda", dtype=autocast_dtype, enabled=autocast_dtype is not None):
            sum(engine.wrapped(*batch_inputs(batch))).backward()
    except torch.OutOfMemoryError:
        raise _oom(cfg, device, batch.input_ids.shape[1]) from None
    finally:
        engine.optimizer.zero_grad(set_to_none=True)
        torch.cuda.empty_cache()


def _build_engine(cfg: PretrainConfig, facts: ExampleFacts, init: Path | None, *, pair_task: bool, mlm: bool,
                  contrastive: Contrastive | None, dist: Dist, device: torch.device,
                  autocast_dtype: torch.dtype | None) -> tuple[Engine, list[str]]:
    """The model (the same initial weights on every process), wrapped for the processes, with its
    optimizer and loss scaler; and what --init left freshly initialised."""
    model, fresh = build_model(cfg.shape, vocab_size=facts.vocab_size,
                               pad_token_id=int(facts.special_ids["pad"]), init=init, seed=cfg.seed,
                               dropout=cfg.dropout)
    # built before the per-process reseed below, so a projection head starts the same everywhere
    loss_model = PretrainingLoss(model, pair_task=pair_task, mlm=mlm, contrastive=contrastive).to(device)
    if dist.rank:  # the same weights everywhere, but each process its own dropout stream
        torch.manual_seed(_rank_seed(cfg.seed, dist.rank, 0))
    wrapped = wrap(loss_model, strategy=cfg.strategy, dist=dist, device=device)
    if cfg.compile:
        wrapped = torch.compile(wrapped)
    optimizer = build_optimizer(loss_model, name=cfg.optimizer, learning_rate=cfg.learning_rate,
                                weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=autocast_dtype == torch.float16)
    return Engine(loss_model, wrapped, optimizer, scaler, dist), fresh


def _last_record(out_dir: Path) -> dict[str, Any]:
    """The last metrics.jsonl record, for a resumed run that had no step left to train (its budget
    was spent at the checkpoint); without one, a record of unknown losses."""
    path = out_dir / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.is_file() else []
    return json.loads(lines[-1]) if lines else {"loss": None, "mlm_loss": None, "nsp_loss": None,
                                                "simcse_loss": None}


def train_session(cfg: PretrainConfig, examples: Manifest, facts: ExampleFacts, objective: str,
                  init: Path | None, out: StageOutput) -> Manifest | None:
    """Train this process's share; process 0 returns the manifest, the others None."""
    wall_started = time.perf_counter()
    device_type = resolve_device(cfg.device).type if not cfg.procs else "cpu"
    dist = distributed.init_process_group(device_type)
    device = resolve_device(cfg.device if not cfg.procs else "cpu", dist.local_rank)
    done = _on_main(dist, out.up_to_date)
    if done is not None:
        return done
    autocast_dtype = resolve_precision(cfg.precision, device)
    precision = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[autocast_dtype]
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # the fp32 parts (optimizer, fp32 runs) use TF32
        torch.backends.cudnn.allow_tf32 = True
    out_dir = out.directory
    if dist.is_main:
        remove_partial(out_dir)

    train_set = PairExamples.from_manifest(examples, "train", facts.vocab_size, seed=cfg.seed)
    pair_task, mlm = objective in ("mlm+nsp", "mlm+sop"), objective != "simcse"
    pad_id = int(facts.special_ids["pad"])
    pairs = contrastive = contrast = None
    if cfg.contrastive:
        if cfg.pairs is not None:
            pairs = ContrastPairs.from_file(cfg.pairs, facts.tokenizer_dir, facts.max_seq_length)
        contrastive = Contrastive(temperature=cfg.temperature, pooling=cfg.pooling,
                                  views=pairs.view_count if pairs else 1, group=distributed.side_group())
        contrast = ContrastSource(mlm=mlm, pairs=pairs,
                                  pair_order=SampleOrder(len(pairs), cfg.seed) if pairs else None)
        if pairs is None and cfg.dropout == 0 and dist.is_main:
            say("pretrain: warning: --dropout 0 with unsupervised SimCSE makes each sentence's positive "
                "identical to it; the loss then only pushes sentences apart")
    engine, fresh = _build_engine(cfg, facts, init, pair_task=pair_task, mlm=mlm, contrastive=contrastive,
                                  dist=dist, device=device, autocast_dtype=autocast_dtype)
    loss_model, model = engine.loss_model, engine.loss_model.model
    budget_s = budget_seconds(cfg.budget)
    warmup = warmup_steps(cfg.warmup_steps, cfg.max_steps) if not budget_s else 0
    schedule = LrSchedule(peak=cfg.learning_rate, kind=cfg.schedule, warmup=warmup, max_steps=cfg.max_steps,
                          budget_s=budget_s, warmup_fraction=cfg.warmup_steps if budget_s else 0.0)
    accum, global_batch = cfg.accumulation, cfg.resolved_global_batch
    order = SampleOrder(len(train_set), cfg.seed)

    def cursor_of(state: TrainerState) -> dict[str, Any]:
        """Where the data stands, and which data and order it is a position in."""
        epoch, index = order.cursor(state.samples)
        cursor = {"epoch": epoch, "index": index, "num_examples": len(train_set),
                  "examples": examples.fingerprint, "seed": cfg.seed}
        if pairs is not None:  # the pairs are read at the same stream positions, in their own order
            cursor["pairs"] = len(pairs)
        return cursor

    state, start = TrainerState(), _on_main(dist, lambda: _resume_point(cfg, out_dir))
    if start is not None:
        loaded = load_checkpoint(start)
        state, cursor = loaded.state, loaded.data_cursor
        if cursor != cursor_of(state) or state.step >= cfg.max_steps:
            raise UserError(f"{start}: made on other examples or with another --seed (cursor {cursor}) or "
                            f"up to step {state.step}, but this run has {len(train_set)} examples of "
                            f"{examples.fingerprint[:12]}, --seed {cfg.seed} and --max-steps "
                            f"{cfg.max_steps}; resume it with the examples and options that made it, or "
                            f"pass --resume no")
        _check_shape(start, model)
        _restore(loaded, engine, dist, cfg.seed)
        del loaded
        if dist.is_main:
            say(f"pretrain: resuming from {start} (step {state.step}, epoch {cursor['epoch']}, "
                f"example {cursor['index']})")
    elif dist.is_main:
        shutil.rmtree(out_dir / "tb", ignore_errors=True)
    if device.type == "cuda":  # the probe batch sorts every example by length: only where it is used
        _probe_memory(engine, probe_batch(train_set, contrast, cfg.micro_batch_size, pad_id), cfg, device,
                      autocast_dtype)

    mconf = model.config
    num_parameters = sum(p.numel() for p in model.parameters())
    embedding = model.bert.embeddings.word_embeddings.weight.numel()
    shape = {"preset": None if init else cfg.preset, "init": str(init) if init else None,
             "layers": mconf.num_hidden_layers, "hidden": mconf.hidden_size,
             "heads": mconf.num_attention_heads, "intermediate": mconf.intermediate_size,
             "max_position_embeddings": mconf.max_position_embeddings}
    mean_tokens = train_set.total_tokens() / len(train_set)
    masked_fraction = train_set.masked_fraction()
    # tokens read for SimCSE pass no MLM head: with mlm+simcse roughly half the tokens read are the
    # masked examples (pair examples' first segments, read twice, are about the other half; a rough
    # estimate for MFU only, as is the attention length, taken from the examples)
    mlm_share = {"simcse": 0.0, "mlm+simcse": 0.5}.get(objective, 1.0)
    flops_per_token = training_flops_per_token(
        layers=mconf.num_hidden_layers, hidden=mconf.hidden_size, intermediate=mconf.intermediate_size,
        vocab_rows=mconf.vocab_size, seq_len=attention_length(train_set.lengths()),
        masked_fraction=masked_fraction * mlm_share,
        pair_task=pair_task)
    sentence = ({"pooling": cfg.pooling, "max_seq_length": facts.max_seq_length} if contrastive else None)
    peak = peak_flops(device, precision, cfg.peak_tflops)
    resolved = {**cfg.to_dict(), "resolved": {
        "device": device.type, "precision": precision, "warmup_steps": warmup, "objective": objective,
        "global_batch": global_batch, "grad_accum": accum, "world_size": dist.world_size,
        "vocab_size": facts.vocab_size, "model_vocab_size": mconf.vocab_size, "model": shape}}
    schedule_text = (f"{cfg.schedule} over a {cfg.budget} budget, {cfg.warmup_steps:.0%} warmup" if budget_s
                     else f"{cfg.schedule} to step {cfg.max_steps}, {warmup} warmup steps")
    print_summary([
        ("model", f"{shape['layers']}×{shape['hidden']} BERT ({shape['heads']} heads, ffn "
                  f"{shape['intermediate']}), {format_count(num_parameters)} parameters "
                  f"({format_count(num_parameters - embedding)} non-embedding)"
                  + (f", from {init}; fresh: {', '.join(fresh) or 'nothing'}" if init else "")),
        ("objective", f"{objective}, dropout {cfg.dropout:g}" + (
            f"; {cfg.pooling} pooling, temperature {cfg.temperature:g}"
            + (f", weight {cfg.simcse_weight:g}" if objective == "mlm+simcse" else "")
            + (f", {len(pairs):,} {'+'.join(['anchor', 'positive', 'negative'][:pairs.view_count])} pairs"
               if pairs else ", dropout views of first segments")
            + f", {cfg.micro_batch_size * dist.world_size} sentences per contrastive batch"
            if contrastive else "")),
        ("FLOPs per token", f"{format_flops(flops_per_token)} (training: 6N + attention + sparse MLM head)"),
        ("data", f"{len(train_set):,} train examples of {mean_tokens:.0f} tokens on average (up to "
                 f"{facts.max_seq_length}), {masked_fraction:.1%} masked"
                 + (", masked anew each epoch" if train_set.dynamic else "")),
        ("global batch", f"{global_batch} = {cfg.micro_batch_size} micro × {accum} accum × {dist.world_size} "
                         f"process(es), ~{mean_tokens * global_batch:,.0f} tokens/step"),
        ("devices", f"{dist.world_size} × {device.type}"
                    + (f" ({cfg.strategy})" if dist.enabled else "") + f", {precision}"
                    + (", compiled" if cfg.compile else "")),
        ("optimizer", f"{cfg.optimizer}, lr {cfg.learning_rate:g}, weight decay {cfg.weight_decay:g}, clip "
                      f"{cfg.max_grad_norm:g}"),
        ("schedule", schedule_text),
        ("steps", f"{state.step} → {cfg.max_steps}"
                  + (f" (or {cfg.budget} of training)" if budget_s else "")),
        ("checkpoints", f"{out_dir}: every {cfg.save_every or '-'} steps"
                        + (f" / {cfg.save_every_minutes:g} min" if cfg.save_every_minutes else "")
                        + f", keep {cfg.keep_last or 'all'}"),
        ("resume", str(start) if start else "fresh start"),
    ], enabled=dist.is_main)

    def save(state: TrainerState, name: str, with_training: bool) -> Path:
        """Collective: every process hands in its state; process 0 writes."""
        weights, optim = full_state(loss_model, engine.wrapped, engine.optimizer, is_main=dist.is_main)
        rng = distributed.gather_objects(capture_rng())
        path = out_dir / name
        if dist.is_main:
            training = {"optimizer": optim, "scaler": engine.scaler.state_dict()} if with_training else None
            save_checkpoint(out_dir, name, model=model, weights=weights, tokenizer_dir=facts.tokenizer_dir,
                            config=resolved, state=state, data_cursor=cursor_of(state), rng=rng,
                            training=training, sentence=sentence)
            if with_training:
                prune(out_dir, cfg.keep_last)
        distributed.barrier()
        return path

    workers = cfg.workers if cfg.workers >= 0 else (2 if device.type == "cuda" else 0)
    batches = MicroBatches(train_set, order, start=state.samples, micro_batch_size=cfg.micro_batch_size,
                           accum=accum, steps=cfg.max_steps - state.step, pad_id=pad_id,
                           world_size=dist.world_size, rank=dist.rank,
                           pad_multiple=8 if device.type == "cuda" else 1, contrast=contrast)
    settings = LoopSettings(max_steps=cfg.max_steps, grad_accum=accum, samples_per_step=global_batch,
                            max_grad_norm=cfg.max_grad_norm, log_every=cfg.log_every,
                            save_every=cfg.save_every,
                            save_every_s=cfg.save_every_minutes * 60, budget_s=budget_s, schedule=schedule,
                            device=device, autocast_dtype=autocast_dtype, simcse_weight=cfg.simcse_weight)
    monitor = Monitor(out_dir, start_step=state.step, max_steps=cfg.max_steps, budget_s=budget_s,
                      flops_per_token=flops_per_token,
                      peak_flops=peak * dist.world_size if peak else None, enabled=dist.is_main)
    first_tokens, trained_s = state.tokens, state.elapsed_s
    try:
        batch_iter = iter(loader(batches, workers=workers, pin_memory=device.type == "cuda"))
        state, record = train(engine, batch_iter, state=state, settings=settings, monitor=monitor,
                              save=lambda s: save(s, step_dir_name(s.step), True), last_checkpoint=start)
    except torch.OutOfMemoryError:  # the probe cannot count optimizer state, first allocated here
        raise _oom(cfg, device, facts.max_seq_length) from None
    finally:
        monitor.close()
    record = record or _last_record(out_dir)

    save(state, FINAL, False)
    manifest = None
    if dist.is_main:  # process 0 writes the manifest; the launcher reads it back
        out.record_file(f"{FINAL}/model.safetensors")
        session_s = state.elapsed_s - trained_s
        tokens_per_s = (state.tokens - first_tokens) / max(session_s, 1e-9)
        stats: dict[str, Any] = {
            "steps": state.step, "tokens": state.tokens, "samples": state.samples,
            "epochs": round(state.samples / len(train_set), 3),
            "loss": record["loss"], "mlm_loss": record["mlm_loss"], "nsp_loss": record["nsp_loss"],
            "simcse_loss": record.get("simcse_loss"),
            "tokens_per_s": round(tokens_per_s, 1),
            "mfu": round(mfu, 4) if (mfu := monitor.mfu(tokens_per_s)) is not None else None,
            "train_s": round(state.elapsed_s, 3), "wall_s": round(time.perf_counter() - wall_started, 3),
            "device": device.type, "world_size": dist.world_size,
            "resumed_from": str(start) if start else None}
        extra = {"vocab_size": facts.vocab_size, "model_vocab_size": mconf.vocab_size,
                 "tokenizer_sha256": facts.tokenizer_sha256, "special_ids": facts.special_ids,
                 "max_seq_length": facts.max_seq_length, "model": shape, "num_parameters": num_parameters,
                 "freshly_initialised": fresh, "global_batch": global_batch, "objective": objective,
                 "flops_per_token": flops_per_token, "precision": precision, "final": FINAL,
                 "sentence_embedding": sentence,
                 "contrastive_batch": cfg.micro_batch_size * dist.world_size if contrastive else None}
        losses = (f"loss {record['loss']:.4f} ({loss_parts(record)})" if record["loss"] is not None
                  else "no step left to train")
        say(f"pretrain: {state.step} steps, {state.tokens:,} tokens, {losses}, "
            f"{stats['tokens_per_s']:,.0f} tokens/s; model in {out_dir / FINAL}")
        manifest = out.finish(stats=stats, extra=extra)
    distributed.barrier()  # other nodes' launchers read the manifest once every process is here
    return manifest
