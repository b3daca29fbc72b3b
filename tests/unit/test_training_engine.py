"""The engine's parts: masked-only loss, accumulation, checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pretrain_cli.modeling.presets import PRESETS, padded_vocab_size
from pretrain_cli.modeling.pretraining import PretrainingLoss, batch_inputs, build_model
from pretrain_cli.store import read_manifest
from pretrain_cli.training.checkpoint import (
    TrainerState,
    capture_rng,
    load_checkpoint,
    newest_good_checkpoint,
    prune,
    remove_partial,
    restore_rng,
    save_checkpoint,
    step_checkpoints,
)
from pretrain_cli.training.data import MicroBatches, PairExamples, SampleOrder
from pretrain_cli.training.distributed import Dist
from pretrain_cli.training.loop import Engine, LoopSettings, train
from pretrain_cli.training.monitor import Monitor
from pretrain_cli.training.parallel import full_state, load_full_state
from pretrain_cli.training.schedule import LrSchedule, build_optimizer


@pytest.fixture(scope="module")
def vocab(examples: Path) -> int:
    return read_manifest(examples, "mask").extra["vocab_size"]


def tiny(vocab: int, seed: int = 0, dropout: float | None = None) -> torch.nn.Module:
    model, _ = build_model(PRESETS["tiny"], vocab_size=vocab, pad_token_id=0, init=None, seed=seed)
    if dropout is not None:
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = dropout
        model.config.attention_probs_dropout_prob = dropout
    return model


def test_masked_only_loss_equals_the_full_vocabulary_loss(train_set: PairExamples, vocab: int) -> None:
    model = tiny(vocab).eval()
    batch = train_set.collate(torch.arange(12).numpy(), pad_id=0)
    labels = torch.full_like(batch.input_ids, -100)
    labels[batch.mlm_rows, batch.mlm_cols] = batch.mlm_labels
    with torch.no_grad():
        reference = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                          token_type_ids=batch.token_type_ids, labels=labels,
                          next_sentence_label=batch.nsp_labels).loss
        mlm, nsp, simcse = PretrainingLoss(model, pair_task=True)(*batch_inputs(batch))
    assert model.config.vocab_size == padded_vocab_size(vocab) and model.config.vocab_size % 8 == 0
    assert simcse == 0  # no contrastive objective
    assert (mlm / batch.masked + nsp / batch.size).item() == pytest.approx(reference.item(), rel=1e-5)


def run_loop(train_set: PairExamples, vocab: int, out: Path, *, micro: int, accum: int,
             steps: int = 2) -> dict[str, torch.Tensor]:
    model = tiny(vocab, dropout=0.0)  # dropout masks depend on the batch shape; without it only sums differ
    loss_model = PretrainingLoss(model, pair_task=True)
    optimizer = build_optimizer(loss_model, name="adamw", learning_rate=1e-3, weight_decay=0.01)
    batches = MicroBatches(train_set, SampleOrder(len(train_set), 0), start=0, micro_batch_size=micro,
                           accum=accum, steps=steps, pad_id=0)
    settings = LoopSettings(max_steps=steps, grad_accum=accum, samples_per_step=micro * accum,
                            max_grad_norm=1.0, log_every=1, save_every=100, save_every_s=0, budget_s=0,
                            schedule=LrSchedule(peak=1e-3, kind="linear", warmup=1, max_steps=steps),
                            device=torch.device("cpu"), autocast_dtype=None)
    out.mkdir()
    monitor = Monitor(out, start_step=0, max_steps=steps)
    engine = Engine(loss_model, loss_model, optimizer, torch.amp.GradScaler("cpu", enabled=False),
                    Dist(rank=0, world_size=1, local_rank=0))
    try:
        state, record = train(engine, iter(batches), state=TrainerState(), settings=settings,
                              monitor=monitor, save=lambda s: out, last_checkpoint=None)
    finally:
        monitor.close()
    assert state.step == steps and state.samples == steps * micro * accum and record is not None
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_gradient_accumulation_matches_one_big_batch(train_set: PairExamples, vocab: int,
                                                     tmp_path: Path) -> None:
    big = run_loop(train_set, vocab, tmp_path / "big", micro=16, accum=1)
    accumulated = run_loop(train_set, vocab, tmp_path / "acc", micro=4, accum=4)
    for name, tensor in big.items():
        torch.testing.assert_close(accumulated[name], tensor, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize("optimizer_name", ["adamw", "lamb"])
def test_checkpoint_round_trip_restores_weights_optimizer_and_rng(examples: Path, vocab: int, tmp_path: Path,
                                                                  optimizer_name: str) -> None:
    model = tiny(vocab)
    loss_model = PretrainingLoss(model, pair_task=True)
    optimizer = build_optimizer(loss_model, name=optimizer_name, learning_rate=1e-3, weight_decay=0.01)
    model(input_ids=torch.tensor([[2, 7, 3]])).prediction_logits.sum().backward()
    optimizer.step()
    state = TrainerState(step=1, tokens=3, samples=1, elapsed_s=0.5, learning_rate=5e-4)
    weights, optim = full_state(loss_model, loss_model, optimizer)
    path = save_checkpoint(tmp_path, "step-00000001", model=model, weights=weights,
                           tokenizer_dir=examples / "tokenizer", config={"preset": "tiny"}, state=state,
                           data_cursor={"epoch": 0, "index": 1}, rng=[capture_rng()],
                           training={"optimizer": optim, "scaler": None})
    expected_draw = torch.rand(3)

    other = tiny(vocab, seed=1)
    other_loss = PretrainingLoss(other, pair_task=True)
    other_opt = build_optimizer(other_loss, name=optimizer_name, learning_rate=1e-3, weight_decay=0.01)
    loaded = load_checkpoint(path)
    load_full_state(other_loss, other_loss, other_opt, loaded.weights, loaded.training["optimizer"])
    restore_rng(loaded.rng[0])
    assert loaded.state == state and loaded.data_cursor == {"epoch": 0, "index": 1}
    assert torch.equal(torch.rand(3), expected_draw)  # the RNG continues where the checkpoint was taken
    for (name, a), b in zip(model.state_dict().items(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    ours, theirs = optimizer.state_dict(), other_opt.state_dict()
    assert ours["param_groups"] == theirs["param_groups"]
    for index, values in ours["state"].items():
        for key, value in values.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(theirs["state"][index][key])), key
    assert (path / "tokenizer.json").is_file() and (path / "config.json").is_file()


def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(examples: Path, vocab: int,
                                                                  tmp_path: Path) -> None:
    model = tiny(vocab)
    loss_model = PretrainingLoss(model, pair_task=True)
    optimizer = build_optimizer(loss_model, name="adamw", learning_rate=1e-3, weight_decay=0.01)
    weights, optim = full_state(loss_model, loss_model, optimizer)
    for step in (2, 4):
        save_checkpoint(tmp_path, f"step-{step:08d}", model=model, weights=weights,
                        tokenizer_dir=examples / "tokenizer", config={}, state=TrainerState(step=step),
                        data_cursor={"epoch": 0, "index": step}, rng=[capture_rng()],
                        training={"optimizer": optim, "scaler": None})
    damaged = tmp_path / "step-00000004" / "model.safetensors"
    blob = bytearray(damaged.read_bytes())
    blob[-10] ^= 0xFF  # one flipped bit in a weight: still a loadable file, caught by the checksum
    damaged.write_bytes(bytes(blob))
    assert newest_good_checkpoint(tmp_path) == tmp_path / "step-00000002"
    assert (tmp_path / "corrupt-step-00000004" / "model.safetensors").read_bytes() == bytes(blob)
    assert [p.name for p in step_checkpoints(tmp_path)] == ["step-00000002"]


def test_prune_keeps_the_newest_and_partial_saves_are_ignored_then_removed(tmp_path: Path) -> None:
    for step in (2, 4, 6):
        path = tmp_path / f"step-{step:08d}"
        path.mkdir()
        (path / "trainer_state.json").write_text("{}")
        (path / "optimizer.pt").write_bytes(b"")
    (tmp_path / ".step-00000008.tmp-123").mkdir()
    assert [p.name for p in step_checkpoints(tmp_path)] == ["step-00000002", "step-00000004", "step-00000006"]
    prune(tmp_path, keep_last=2)
    assert [p.name for p in step_checkpoints(tmp_path)] == ["step-00000004", "step-00000006"]
    prune(tmp_path, keep_last=0)
    assert len(step_checkpoints(tmp_path)) == 2
    remove_partial(tmp_path)
    assert not (tmp_path / ".step-00000008.tmp-123").exists()
