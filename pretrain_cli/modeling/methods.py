"""Fine-tuning methods: which tensors of a BERT task model train, and the forward a training loop drives.

    model = build_model(Path("ckpt/final"), "classification", labels, random_init=False, seed=1)
    ft = prepare(model, MethodConfig(name="lora", lora_r=8), "classification")
    loss = F.cross_entropy(ft.logits(batch), batch["labels"]) + ft.regularisation()
    loss.backward()
    optimizer.step()                     # over ft.trainable().values()
    ft.after_backward(step)              # AdaLoRA's rank allocation; nothing for the others
    optimizer.zero_grad()

    full      every weight
    lora      peft LoRA on the attention query/value projections (r, alpha, dropout)
    adalora   peft AdaLoRA on query/value: starts at rank r and prunes, by importance, to r/2 on average
    ia3       peft IA3: learned rescaling of key, value and the output projections (peft's BERT default)
    prompt    peft prompt tuning: learned virtual tokens before the input embeddings
    prefix    peft prefix tuning: learned key/value prefixes in every layer's self-attention
              (P-tuning v2 without the reparameterisation MLP)
    adapter   ptk's Houlsby or Pfeiffer bottleneck adapters, with the LayerNorms (`modeling.adapters`)
    bitfit    every bias (`modeling.adapters`)

Every method trains the task head (`classifier`); for peft's methods it is saved with the adapter
(`modules_to_save`). The pooler's weights stay frozen (BitFit trains its bias, as every bias): they
are pretrained (NSP in a ptk checkpoint, MiniLM ships its own), and training their hidden² weights
would cost more than LoRA itself. All eight methods work
for the three task kinds (classification, regression, tokens). Nothing here imports torch or peft at
module level: the CLI imports this module at startup.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import torch

    from pretrain_cli.tasks.data import TaskKind

METHODS = ("full", "lora", "adalora", "ia3", "prompt", "prefix", "adapter", "bitfit")
PEFT_METHODS = ("lora", "adalora", "ia3", "prompt", "prefix")
HEAD = "classifier"  # the task head's module name in BertForSequenceClassification/TokenClassification
# the options each method reads (what `to_dict` reports and ptk_method.json keeps)
OPTIONS = {"lora": ("lora_r", "lora_alpha", "lora_dropout"),
           "adalora": ("lora_r", "lora_alpha", "lora_dropout", "total_steps"),
           "prompt": ("virtual_tokens",), "prefix": ("virtual_tokens",),
           "adapter": ("adapter_variant", "adapter_size")}


@dataclasses.dataclass(kw_only=True)
class MethodConfig:
    """A fine-tuning method and its options (each read only by the methods named beside it)."""

    name: str = "full"  # one of METHODS
    lora_r: int = 8  # lora: the rank; adalora: the initial rank (the budget ends at half of it)
    lora_alpha: int = 16  # lora, adalora: the update is scaled by alpha / r
    lora_dropout: float = 0.1  # lora, adalora: dropout on the low-rank branch's input
    virtual_tokens: int = 20  # prompt, prefix: learned virtual tokens (they take positions too)
    adapter_variant: Literal["houlsby", "pfeiffer"] = "houlsby"  # adapter: after attention + FFN, or FFN only
    adapter_size: int = 64  # adapter: the bottleneck width
    total_steps: int = 0  # adalora: the run's optimizer steps, which its pruning schedule spans

    @property
    def virtual_positions(self) -> int:
        """Positions the method adds in front of every input (its tokens must fit the position table too)."""
        return self.virtual_tokens if self.name in ("prompt", "prefix") else 0

    def problems(self) -> list[str]:
        """Every invalid option, as CLI-flag messages (total_steps is the caller's, not the user's)."""
        problems = []
        if self.name not in METHODS:
            problems.append(f"--method {self.name!r}: choose one of {', '.join(METHODS)}")
        for name in ("lora_r", "lora_alpha", "virtual_tokens", "adapter_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                problems.append(f"--{name.replace('_', '-')} {value!r}: must be an integer, at least 1")
        if not isinstance(self.lora_dropout, (int, float)) or not 0 <= self.lora_dropout < 1:
            problems.append(f"--lora-dropout {self.lora_dropout!r}: must be in [0, 1)")
        if self.adapter_variant not in ("houlsby", "pfeiffer"):
            problems.append(f"--adapter-variant {self.adapter_variant!r}: choose houlsby or pfeiffer")
        return problems

    def to_dict(self) -> dict[str, Any]:
        """The name and the options this method reads; `MethodConfig(**to_dict())` rebuilds it."""
        return {"name": self.name, **{key: getattr(self, key) for key in OPTIONS.get(self.name, ())}}


@dataclasses.dataclass
class Finetunable:
    """A task model with a method applied: what a training loop drives and what gets saved."""

    model: torch.nn.Module  # a peft model for PEFT_METHODS, else the transformers model itself
    method: MethodConfig
    kind: TaskKind
    # adapter/bitfit train base tensors in place: their starting values, so that a randomly
    # initialised base can still be saved as it was (peft keeps its own frozen originals)
    initial: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)

    @property
    def hf_model(self) -> torch.nn.Module:
        """The transformers model underneath (for peft: its base model, the method's layers inside)."""
        return self.model.get_base_model() if self.method.name in PEFT_METHODS else self.model

    def logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, C) for classification, (B,) for regression, (B, L, C) for tokens, aligned with the inputs."""
        inputs = {key: batch[key] for key in ("input_ids", "token_type_ids", "attention_mask")}
        logits = self.model(**inputs).logits
        if self.kind == "tokens" and self.method.name == "prompt":
            logits = logits[:, self.method.virtual_tokens:]  # peft's outputs include the virtual tokens
        return logits.squeeze(-1) if self.kind == "regression" else logits

    def regularisation(self) -> torch.Tensor | float:
        """A term for the training loss: AdaLoRA's orthogonality penalty on its singular vectors (as
        peft adds it when it computes the loss itself), 0 for every other method."""
        if self.method.name != "adalora":
            return 0.0
        import torch

        penalties = []
        for name, p in self.model.named_parameters():
            if ".lora_A." in name or ".lora_B." in name:
                gram = p @ p.T if ".lora_A." in name else p.T @ p
                penalties.append(torch.linalg.matrix_norm(gram - torch.eye(len(gram), device=gram.device)))
        weight = self.model.peft_config["default"].orth_reg_weight
        return weight * torch.stack(penalties).mean()

    def after_backward(self, step: int) -> None:
        """AdaLoRA: score each singular triplet by its gradient and prune to the step's rank budget.
        Call it after the optimizer step and before zero_grad (peft's order): it needs the gradients,
        and an optimizer step after the pruning would revive the pruned triplets (Adam's momentum
        moves them off zero). A no-op for the other methods."""
        if self.method.name == "adalora":
            self.model.base_model.update_and_allocate(step)

    def extra_state(self) -> dict[str, Any]:
        """What an exact resume needs beyond parameters and optimizer: AdaLoRA's rank allocator (its
        smoothed sensitivity and uncertainty per LoRA tensor, as nested lists) and the rank pattern
        it has settled on; {} for every other method."""
        if self.method.name != "adalora":
            return {}
        allocator = self.model.base_model.rankallocator
        state: dict[str, Any] = {
            field: {name: tensor.tolist() for name, tensor in getattr(allocator, field).items()}
            for field in ("ipt", "exp_avg_ipt", "exp_avg_unc")}
        pattern = self.model.peft_config["default"].rank_pattern
        state["rank_pattern"] = ({name: [bool(v) for v in mask] for name, mask in pattern.items()}
                                 if pattern else None)
        return state

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Put back what `extra_state` returned (on the parameters' devices)."""
        if not state:
            return
        import torch

        allocator = self.model.base_model.rankallocator
        self.model.peft_config["default"].rank_pattern = state.pop("rank_pattern")
        params = dict(self.hf_model.named_parameters())  # the allocator's names are the inner model's
        for field, tensors in state.items():
            setattr(allocator, field, {name: torch.tensor(values, dtype=params[name].dtype,
                                                          device=params[name].device)
                                       for name, values in tensors.items()})

    def trainable(self) -> dict[str, torch.Tensor]:
        """name → parameter for every tensor that trains (the head included)."""
        return {name: p for name, p in self.model.named_parameters() if p.requires_grad}

    def base_weights(self) -> dict[str, torch.Tensor]:
        """The base model's state dict as it was before training, under the base model's own names."""
        assert self.method.name != "full", "a full fine-tune keeps no base apart from itself"
        if self.method.name in PEFT_METHODS:
            # peft keeps the frozen base layers as `base_layer` and the initial head as `original_module`
            state = self.hf_model.state_dict()
            dropped = (".lora_", ".ia3_", ".ranknum.", ".modules_to_save.")
            return {key.replace(".base_layer.", ".").replace(".original_module.", "."): tensor
                    for key, tensor in state.items() if not any(part in key for part in dropped)}
        from pretrain_cli.modeling.adapters import base_name

        state = {base_name(key): tensor for key, tensor in self.model.state_dict().items()}
        return {key: tensor for key, tensor in state.items() if key is not None} | self.initial


def prepare(model: torch.nn.Module, method: MethodConfig, kind: TaskKind) -> Finetunable:
    """Apply `method` to a task model from `build_model` (in place); the head always trains."""
    assert method.name in METHODS, method.name  # validated with the CLI options
    if method.name == "full":
        model.requires_grad_(True)
        return Finetunable(model=model, method=method, kind=kind)
    if method.name in PEFT_METHODS:
        from peft import get_peft_model

        from pretrain_cli.console import quiet_transformers

        with quiet_transformers():
            peft_model = get_peft_model(model, peft_config(method, kind))
        return Finetunable(model=peft_model, method=method, kind=kind)
    from pretrain_cli.modeling.adapters import add_adapters, trains_with_adapters, trains_with_bitfit

    rule = trains_with_adapters if method.name == "adapter" else trains_with_bitfit
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith(f"{HEAD}.") or rule(name))
    initial = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    if method.name == "adapter":
        add_adapters(model.bert, variant=method.adapter_variant, size=method.adapter_size)
    return Finetunable(model=model, method=method, kind=kind, initial=initial)


def peft_config(method: MethodConfig, kind: TaskKind) -> Any:
    """peft's config for one of PEFT_METHODS on a BERT task model."""
    from peft import (
        AdaLoraConfig,
        IA3Config,
        LoraConfig,
        PrefixTuningConfig,
        PromptTuningConfig,
        PromptTuningInit,
        TaskType,
    )

    task_type = TaskType.TOKEN_CLS if kind == "tokens" else TaskType.SEQ_CLS
    if method.name == "lora":
        return LoraConfig(task_type=task_type, r=method.lora_r, lora_alpha=method.lora_alpha,
                          lora_dropout=method.lora_dropout, target_modules=["query", "value"],
                          modules_to_save=[HEAD])
    if method.name == "adalora":
        assert method.total_steps > 0, "AdaLoRA's schedule needs the run's total_steps"
        # the AdaLoRA paper's shape: a warm-up tenth at full rank, pruning, then the last fifth at
        # the final ranks (integer division keeps tinit < total - tfinal for any total >= 1)
        return AdaLoraConfig(task_type=task_type, init_r=method.lora_r, target_r=max(1, method.lora_r // 2),
                             lora_alpha=method.lora_alpha, lora_dropout=method.lora_dropout,
                             target_modules=["query", "value"], total_step=method.total_steps,
                             tinit=method.total_steps // 10, tfinal=method.total_steps // 5,
                             modules_to_save=[HEAD])
    if method.name == "ia3":
        # "output.dense" names both the attention output and the FFN output projections
        return IA3Config(task_type=task_type, target_modules=["key", "value", "output.dense"],
                         feedforward_modules=["output.dense"], modules_to_save=[HEAD])
    if method.name == "prompt":
        # virtual tokens start as embeddings of random vocabulary items, not as noise far off the
        # embedding scale (Lester et al., 2021, found vocabulary initialisation better)
        return PromptTuningConfig(task_type=task_type, num_virtual_tokens=method.virtual_tokens,
                                  prompt_tuning_init=PromptTuningInit.SAMPLE_VOCAB)
    assert method.name == "prefix", method.name
    return PrefixTuningConfig(task_type=task_type, num_virtual_tokens=method.virtual_tokens)


def count_parameters(module: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; a tensor shared between modules counts once."""
    params = list(module.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)
