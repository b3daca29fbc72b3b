"""LAMB against a plain per-tensor reference, its saved state, and a regression it must fit."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch

from pretrain_cli.training.lamb import Lamb

BETAS = (0.9, 0.999)
EPS = 1e-6


def reference_step(weights: list[torch.Tensor], grads: list[torch.Tensor | None], state: dict[int, dict],
                   *, lr: float, weight_decay: float) -> None:
    """apex FusedLAMB's arithmetic written out one tensor at a time, in float64."""
    beta1, beta2 = BETAS
    for i, (w, g) in enumerate(zip(weights, grads, strict=True)):
        if g is None:
            continue
        s = state.setdefault(i, {"t": 0, "m": torch.zeros_like(w), "v": torch.zeros_like(w)})
        s["t"] += 1
        s["m"] = beta1 * s["m"] + (1 - beta1) * g
        s["v"] = beta2 * s["v"] + (1 - beta2) * g * g
        m_hat, v_hat = s["m"] / (1 - beta1 ** s["t"]), s["v"] / (1 - beta2 ** s["t"])
        update = m_hat / (v_hat.sqrt() + EPS) + weight_decay * w
        ratio = 1.0
        if weight_decay != 0:  # apex without use_nvlamb: no layer adaptation for the no-decay group
            w_norm, u_norm = w.norm().item(), update.norm().item()
            if w_norm > 0 and u_norm > 0:
                ratio = w_norm / u_norm
        weights[i] = w - lr * ratio * update


def test_lamb_matches_the_reference_per_tensor_arithmetic() -> None:
    gen = torch.Generator().manual_seed(0)
    shapes = {"decay": [(8, 5), (16,), (3, 4, 2), (6, 6)], "no_decay": [(5,), (7, 3)]}
    decay = [torch.randn(s, generator=gen) for s in shapes["decay"]]
    decay[3].zero_()  # a zero tensor: weight norm 0, so the trust ratio falls back to 1
    no_decay = [torch.randn(s, generator=gen) for s in shapes["no_decay"]]
    params = [p.clone().requires_grad_() for p in decay + no_decay]
    optimizer = Lamb([{"params": params[:4], "weight_decay": 0.05},
                      {"params": params[4:], "weight_decay": 0.0}], lr=0.02, betas=BETAS, eps=EPS)
    ref_decay, ref_no_decay = [p.double() for p in decay], [p.double() for p in no_decay]
    ref_state_decay: dict[int, dict] = {}
    ref_state_no_decay: dict[int, dict] = {}
    for step in range(6):
        grads = [torch.randn(p.shape, generator=gen) for p in params]
        if step in (1, 4):
            grads[1] = None  # no gradient this step: untouched, and its step count does not move
        for param, grad in zip(params, grads, strict=True):
            param.grad = grad
        optimizer.step()
        doubles = [None if g is None else g.double() for g in grads]
        reference_step(ref_decay, doubles[:4], ref_state_decay, lr=0.02, weight_decay=0.05)
        reference_step(ref_no_decay, doubles[4:], ref_state_no_decay, lr=0.02, weight_decay=0.0)
    worst = max((p.detach().double() - r).abs().max().item()
                for p, r in zip(params, ref_decay + ref_no_decay, strict=True))
    assert worst <= 1e-6
    assert optimizer.state[params[0]]["step"] == 6 and optimizer.state[params[1]]["step"] == 4
    assert all(not torch.equal(p.detach(), q) for p, q in zip(params, decay + no_decay, strict=True))


def test_first_step_moves_each_decayed_tensor_by_lr_times_its_norm() -> None:
    # at step 1 the Adam part is ±1 per element, and the trust ratio rescales the update to ||w||:
    # that layer-wise step size is what sets LAMB apart from Adam
    torch.manual_seed(0)
    decayed, plain = torch.randn(20, 10, requires_grad=True), torch.randn(10, requires_grad=True)
    before = decayed.detach().clone(), plain.detach().clone()
    optimizer = Lamb([{"params": [decayed], "weight_decay": 0.01}, {"params": [plain], "weight_decay": 0.0}],
                     lr=0.1)
    decayed.grad, plain.grad = torch.randn(20, 10) * 5, torch.randn(10) * 5
    optimizer.step()
    moved = (decayed.detach() - before[0]).norm().item()
    assert moved == pytest.approx(0.1 * before[0].norm().item(), rel=1e-5)
    assert (plain.detach() - before[1]).abs().max().item() == pytest.approx(0.1, rel=1e-4)


def test_state_dict_round_trip_continues_identically() -> None:
    def make() -> tuple[torch.nn.Module, Lamb]:
        torch.manual_seed(1)
        model = torch.nn.Sequential(torch.nn.Linear(6, 12), torch.nn.ReLU(), torch.nn.Linear(12, 2))
        decay = [p for p in model.parameters() if p.ndim == 2]
        no_decay = [p for p in model.parameters() if p.ndim < 2]
        groups = [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}]
        return model, Lamb(groups, lr=1e-2)

    data = torch.randn(16, 6, generator=torch.Generator().manual_seed(2))

    def train(model: torch.nn.Module, optimizer: Lamb, steps: int) -> None:
        for _ in range(steps):
            model(data).pow(2).mean().backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    model, optimizer = make()
    train(model, optimizer, 3)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    train(model, optimizer, 4)

    resumed, resumed_optimizer = make()
    resumed.load_state_dict(saved["model"])
    resumed_optimizer.load_state_dict(saved["optimizer"])
    assert resumed_optimizer.state_dict()["state"][0]["step"] == 3
    train(resumed, resumed_optimizer, 4)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), resumed.parameters(), strict=True))


def test_lamb_fits_a_small_regression() -> None:
    gen = torch.Generator().manual_seed(3)
    inputs = torch.randn(256, 8, generator=gen)
    targets = inputs @ torch.randn(8, 1, generator=gen) + 0.5
    torch.manual_seed(3)
    model = torch.nn.Linear(8, 1)
    optimizer = Lamb([{"params": [model.weight], "weight_decay": 0.001},
                      {"params": [model.bias], "weight_decay": 0.0}], lr=0.05)
    losses = []
    for _ in range(300):
        loss = torch.nn.functional.mse_loss(model(inputs), targets)
        losses.append(loss.item())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    assert losses[-1] < 0.01 * losses[0]


def small_net() -> torch.nn.Module:
    torch.manual_seed(4)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.LayerNorm(16), torch.nn.Linear(16, 3))


def lamb_for(model: torch.nn.Module) -> Lamb:
    decay = [p for p in model.parameters() if p.ndim == 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    return Lamb([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}], lr=1e-2)


def train_small_net(model: torch.nn.Module, optimizer: Lamb) -> None:
    inputs = torch.randn(32, 8, generator=torch.Generator().manual_seed(5))
    for _ in range(4):
        model(inputs).pow(2).mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def sharded_worker(rank: int, tmp: Path) -> None:
    """One of two gloo processes: FSDP2 shards every tensor, and both see the same batch."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    dist.init_process_group("gloo", init_method=f"file://{tmp / 'store'}", rank=rank, world_size=2)
    model = small_net()
    fully_shard(model, mesh=init_device_mesh("cpu", (2,)))  # swaps in sharded parameters: group them after
    train_small_net(model, lamb_for(model))
    full = [p.full_tensor() for p in model.parameters()]
    if rank == 0:
        torch.save(full, tmp / "sharded.pt")
    dist.barrier()  # gloo aborts a process whose peer tears the group down while it is still in use
    dist.destroy_process_group()


@pytest.mark.slow
def test_sharded_parameters_take_whole_tensor_trust_ratios(tmp_path: Path) -> None:
    # under FSDP2 each process holds a slice of every tensor; a trust ratio from the local slice's
    # norms would differ per process and from the unsharded run
    import torch.multiprocessing as mp

    mp.spawn(sharded_worker, args=(tmp_path,), nprocs=2)
    model = small_net()
    train_small_net(model, lamb_for(model))
    sharded = torch.load(tmp_path / "sharded.pt", weights_only=True)
    for whole, pieces in zip(model.parameters(), sharded, strict=True):
        torch.testing.assert_close(pieces, whole.detach(), rtol=0, atol=1e-6)


def test_bad_hyperparameters_are_refused() -> None:
    with pytest.raises(ValueError, match="betas"):
        Lamb([torch.zeros(2, requires_grad=True)], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="lr -1"):
        Lamb([torch.zeros(2, requires_grad=True)], lr=-1)
