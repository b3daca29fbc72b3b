"""Wrapping the loss module for DDP or FSDP, and its state as plain, portable dictionaries.

    wrapped = wrap(loss_model, strategy="ddp", dist=dist, device=device)
    with sync_gradients(wrapped, last_micro_batch):   # no all-reduce until the last micro-batch
        loss.backward()
    weights, optim = full_state(loss_model, wrapped, optimizer)   # whole tensors on CPU, every rank
    load_full_state(loss_model, wrapped, optimizer, weights, optim)

Checkpoints hold *full* state keyed by parameter name, whatever the strategy: the weights as the
HF model's state dict and the optimizer state by parameter name instead of by position. So a run
saved under FSDP on 8 GPUs resumes under DDP on 2, or on one CPU process, and back.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from pretrain_cli.modeling.sentence import HEAD_PREFIX
from pretrain_cli.training.distributed import Dist


def wrap(module: torch.nn.Module, *, strategy: str, dist: Dist, device: torch.device) -> torch.nn.Module:
    """`module` ready for `dist`: itself for one process, else DDP or FSDP2 (one shard unit per layer)."""
    if not dist.enabled:
        return module
    if strategy == "fsdp":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh(device.type, (dist.world_size,))
        for layer in module.model.bert.encoder.layer:
            fully_shard(layer, mesh=mesh)
        return fully_shard(module, mesh=mesh)
    from torch.nn.parallel import DistributedDataParallel

    # the loss module's graph is the same every step, so DDP may skip its unused-parameter search
    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)


@contextlib.contextmanager
def sync_gradients(wrapped: torch.nn.Module, enabled: bool) -> Iterator[None]:
    """Let backward all-reduce (or reduce-scatter) gradients only when `enabled`."""
    if hasattr(wrapped, "no_sync") and not enabled:  # DDP
        with wrapped.no_sync():
            yield
        return
    if hasattr(wrapped, "set_requires_gradient_sync"):  # FSDP2
        wrapped.set_requires_gradient_sync(enabled)
    yield


def _is_fsdp(wrapped: torch.nn.Module) -> bool:
    return hasattr(wrapped, "set_requires_gradient_sync")


def _names(module: torch.nn.Module) -> dict[int, str]:
    return {id(p): name for name, p in module.named_parameters()}


def _in_order(optimizer: torch.optim.Optimizer) -> list[torch.nn.Parameter]:
    """The optimizer's parameters in the order its state_dict numbers them."""
    return [p for group in optimizer.param_groups for p in group["params"]]


def full_state(module: torch.nn.Module, wrapped: torch.nn.Module, optimizer: torch.optim.Optimizer, *,
               is_main: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(model weights, optimizer state by parameter name), as whole CPU tensors, on the main process.

    Collective under FSDP: every rank must call it. Elsewhere the other ranks get empty dicts (their
    replicas are the same). Weight names are the HF model's (no wrapper prefix).
    """
    if not is_main and not _is_fsdp(wrapped):
        return {}, {}
    if _is_fsdp(wrapped):
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_model_state_dict,
            get_optimizer_state_dict,
        )

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        weights = get_model_state_dict(wrapped, options=options)
        optim = get_optimizer_state_dict(wrapped, optimizer, options=options)
    else:
        weights = {k: v.detach().cpu() for k, v in module.state_dict().items()}
        names, saved = _names(module), optimizer.state_dict()
        position = {i: names[id(p)] for i, p in enumerate(_in_order(optimizer))}
        optim = {"state": {position[i]: {k: v.cpu() if torch.is_tensor(v) else v for k, v in s.items()}
                           for i, s in saved["state"].items()},
                 "param_groups": [{**g, "params": [position[i] for i in g["params"]]}
                                  for g in saved["param_groups"]]}
    # a tie is one tensor saved once: FSDP's gathered copies would otherwise save it twice
    tied = _tied(module)
    weights = {k.removeprefix("model."): v for k, v in weights.items() if k not in tied}
    return weights, optim


def _tied(module: torch.nn.Module) -> dict[str, str]:
    """Second names of shared tensors (BERT's decoder is the word embedding) → the first name."""
    first_name: dict[int, str] = {}
    aliases = {}
    for name, tensor in module.state_dict(keep_vars=True).items():
        aliases[name] = first_name.setdefault(id(tensor), name)
    return {alias: name for alias, name in aliases.items() if alias != name}


def _with_tied(module: torch.nn.Module, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Add back the tied aliases that checkpoints leave out."""
    return {**{alias: weights[name] for alias, name in _tied(module).items() if name in weights}, **weights}


def load_full_state(module: torch.nn.Module, wrapped: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    weights: dict[str, torch.Tensor], optim: dict[str, Any]) -> None:
    """Put `full_state`'s output back, on every rank; strict about missing or unexpected weights."""
    # the HF model's weights sit under `model.`; a SimCSE projection head beside it
    weights = _with_tied(module, {k if k.startswith(HEAD_PREFIX) else f"model.{k}": v
                                  for k, v in weights.items()})
    if _is_fsdp(wrapped):
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
            set_optimizer_state_dict,
        )

        options = StateDictOptions(full_state_dict=True, strict=True)
        set_model_state_dict(wrapped, weights, options=options)
        set_optimizer_state_dict(wrapped, optimizer, optim, options=options)
        return
    module.load_state_dict(weights, strict=True)
    names = _names(module)
    index = {names[id(p)]: i for i, p in enumerate(_in_order(optimizer))}
    optimizer.load_state_dict({  # load_state_dict moves each tensor to its parameter's device
        "state": {index[name]: s for name, s in optim["state"].items()},
        "param_groups": [{**g, "params": [index[name] for name in g["params"]]}
                         for g in optim["param_groups"]]})
