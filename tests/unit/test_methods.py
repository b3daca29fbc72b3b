"""Fine-tuning methods on a tiny BERT built here, for every method and task kind: which tensors train,
that the logits line up with the inputs, that a trained fine-tune saved and loaded again gives the very
same logits, that a changed base is refused, and that merged exports match the unmerged model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from pretrain_cli.errors import UserError
from pretrain_cli.modeling.finetuned import (
    build_model,
    export_merged,
    load_finetuned,
    load_tokenizer,
    save_finetuned,
)
from pretrain_cli.modeling.methods import (
    METHODS,
    PEFT_METHODS,
    Finetunable,
    MethodConfig,
    count_parameters,
    prepare,
)

KINDS = ("classification", "regression", "tokens")
LABELS = {"classification": ("negative", "neutral", "positive"), "regression": (),
          "tokens": ("O", "B-person", "I-person", "B-location", "I-location")}
LAYERS = 2
# real sentences (rotten_tomatoes and WNUT-style tweets) for the tokenizer and the batch
SENTENCES = [
    "the rock is destined to be the 21st century's new conan",
    "effective but too-tepid biopic",
    "if you sometimes like to go to the movies to have fun , wasabi is a good place to start",
    "emerges as something rare , an issue movie that's so honest and keenly observed",
    "the film provides some great insight into the neurotic mindset of all comics",
    "offers that rare combination of entertainment and education",
    "perhaps no picture ever made has more literally showed that the road to hell is paved",
    "steers turns in a snappy screenplay that curls at the edges",
    "@paul watching the game in new york tonight with sam",
    "heading to london next week , anyone around ?",
]


pytestmark = pytest.mark.usefixtures("one_thread")


def write_tiny_bert(directory: Path, *, bare: bool = False) -> Path:
    """A random 2-layer BertForPreTraining (or bare BertModel) + WordPiece tokenizer in `directory`."""
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertConfig, BertForPreTraining, BertModel, BertTokenizerFast

    trainer = BertWordPieceTokenizer(lowercase=True)
    trainer.train_from_iterator(SENTENCES, vocab_size=200, show_progress=False)
    tokenizer = BertTokenizerFast(vocab=trainer.get_vocab())
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=LAYERS,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    (BertModel if bare else BertForPreTraining)(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


def make_batch(model_dir: Path, kind: str) -> dict[str, torch.Tensor]:
    """Six real sentences, padded to the longest, with labels of the kind (tokens: -100 off real words)."""
    tokenizer = load_tokenizer(model_dir, 48)
    encoded = tokenizer(SENTENCES[3:9], padding=True, return_tensors="pt", return_token_type_ids=True)
    generator = torch.Generator().manual_seed(0)
    rows, width = encoded["input_ids"].shape
    if kind == "classification":
        labels = torch.randint(0, 3, (rows,), generator=generator)
    elif kind == "regression":
        labels = torch.rand(rows, generator=generator) * 5
    else:
        labels = torch.randint(0, len(LABELS["tokens"]), (rows, width), generator=generator)
        labels[encoded["attention_mask"] == 0] = -100
    return {**encoded, "labels": labels}


def loss_of(kind: str, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if kind == "regression":
        return F.mse_loss(logits, labels)
    if kind == "tokens":
        return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
    return F.cross_entropy(logits, labels)


def train(ft: Finetunable, batch: dict[str, torch.Tensor], steps: int = 4) -> None:
    """A few AdamW steps in train mode (dropout on), the way the fine-tune loop drives a method."""
    optimizer = torch.optim.AdamW(list(ft.trainable().values()), lr=1e-2)
    ft.model.train()
    for step in range(steps):
        loss = loss_of(ft.kind, ft.logits(batch), batch["labels"]) + ft.regularisation()
        loss.backward()
        optimizer.step()
        ft.after_backward(step)
        optimizer.zero_grad(set_to_none=True)
    ft.model.eval()


def trained(model_dir: Path, method: str, kind: str, *, random_init: bool = False,
            steps: int = 4) -> tuple[Finetunable, dict[str, torch.Tensor]]:
    """A fine-tune of `model_dir` trained a few steps, and its batch."""
    batch = make_batch(model_dir, kind)
    model = build_model(model_dir, kind, LABELS[kind], random_init=random_init, seed=3)
    ft = prepare(model, MethodConfig(name=method, lora_r=4, virtual_tokens=3, adapter_size=8,
                                     total_steps=steps), kind)
    train(ft, batch, steps)
    return ft, batch


def eval_logits(ft: Finetunable, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return ft.logits(batch)


def test_build_model_from_pretraining_and_bare_directories(tiny_bert: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file
    from transformers import BertForSequenceClassification, BertForTokenClassification

    saved = load_file(tiny_bert / "model.safetensors")
    for kind in KINDS:
        model = build_model(tiny_bert, kind, LABELS[kind], random_init=False, seed=1)
        # the encoder is the checkpoint's; its MLM/NSP heads are gone
        state = model.state_dict()
        assert torch.equal(state["bert.encoder.layer.1.output.dense.weight"],
                           saved["bert.encoder.layer.1.output.dense.weight"])
        assert not any(key.startswith("cls.") for key in state)
        assert model.config._attn_implementation == "sdpa"
    classifier = build_model(tiny_bert, "classification", LABELS["classification"], random_init=False, seed=1)
    assert isinstance(classifier, BertForSequenceClassification) and classifier.num_labels == 3
    assert classifier.config.id2label == {0: "negative", 1: "neutral", 2: "positive"}
    regressor = build_model(tiny_bert, "regression", (), random_init=False, seed=1)
    assert regressor.num_labels == 1 and regressor.config.problem_type == "regression"
    tagger = build_model(tiny_bert, "tokens", LABELS["tokens"], random_init=False, seed=1)
    assert isinstance(tagger, BertForTokenClassification)
    assert tagger.config.label2id == {label: i for i, label in enumerate(LABELS["tokens"])}

    # a bare BertModel directory (MiniLM's layout) loads the same way
    bare = write_tiny_bert(tmp_path / "bare", bare=True)
    model = build_model(bare, "classification", LABELS["classification"], random_init=False, seed=1)
    assert torch.equal(model.state_dict()["bert.embeddings.word_embeddings.weight"],
                       load_file(bare / "model.safetensors")["embeddings.word_embeddings.weight"])

    # the seed fixes the new head, and with random_init every weight
    again = build_model(tiny_bert, "classification", LABELS["classification"], random_init=False, seed=1)
    other = build_model(tiny_bert, "classification", LABELS["classification"], random_init=False, seed=2)
    assert torch.equal(again.classifier.weight, classifier.classifier.weight)
    assert not torch.equal(other.classifier.weight, classifier.classifier.weight)
    random_a = build_model(tiny_bert, "tokens", LABELS["tokens"], random_init=True, seed=5)
    random_b = build_model(tiny_bert, "tokens", LABELS["tokens"], random_init=True, seed=5)
    assert all(torch.equal(value, random_b.state_dict()[key]) for key, value in random_a.state_dict().items())
    assert not torch.equal(random_a.bert.encoder.layer[0].output.dense.weight,
                           tagger.bert.encoder.layer[0].output.dense.weight)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", METHODS)
def test_trained_fine_tune_reloads_to_the_same_logits(tiny_bert: Path, tmp_path: Path, method: str,
                                                      kind: str) -> None:
    ft, batch = trained(tiny_bert, method, kind)
    logits = eval_logits(ft, batch)
    rows, width = batch["input_ids"].shape
    expected = {"classification": (rows, 3), "regression": (rows,), "tokens": (rows, width, 5)}[kind]
    assert logits.shape == expected and torch.isfinite(logits).all()
    # the head trained (it starts as build_model made it, with the same seed)
    fresh = build_model(tiny_bert, kind, LABELS[kind], random_init=False, seed=3)
    head = next(p for name, p in ft.trainable().items() if "classifier" in name and name.endswith("weight"))
    assert not torch.equal(head, fresh.classifier.weight)

    tokenizer = load_tokenizer(tiny_bert, 48)
    save_finetuned(ft, tokenizer, tmp_path / "saved", base_dir=tiny_bert)
    record = json.loads((tmp_path / "saved" / "ptk_method.json").read_text())
    assert record["kind"] == kind and record["labels"] == list(LABELS[kind])
    assert record["method"]["name"] == method
    assert (tmp_path / "saved" / "base_model.json").is_file() == (method != "full")

    loaded, loaded_tokenizer = load_finetuned(tmp_path / "saved")
    assert not loaded.model.training and loaded.method == MethodConfig(**record["method"])
    assert loaded_tokenizer.get_vocab() == tokenizer.get_vocab()
    assert torch.equal(eval_logits(loaded, batch), logits)
    assert count_parameters(loaded.model) == count_parameters(ft.model)


@pytest.mark.parametrize("method", [m for m in METHODS if m != "full"])
def test_random_init_base_is_saved_inside(tiny_bert: Path, tmp_path: Path, method: str) -> None:
    from safetensors.torch import load_file

    ft, batch = trained(tiny_bert, method, "classification", random_init=True)
    save_finetuned(ft, load_tokenizer(tiny_bert, 48), tmp_path / "adapter", base_dir=None)
    record = json.loads((tmp_path / "adapter" / "base_model.json").read_text())
    assert record["path"] == "base_model" and record["inside"]
    assert set(record["files"]) == {"config.json", "model.safetensors"}
    # base_model/ is the random model as build_model made it, before any training
    start = build_model(tiny_bert, "classification", LABELS["classification"], random_init=True, seed=3)
    base = load_file(tmp_path / "adapter" / "base_model" / "model.safetensors")
    assert base.keys() == start.state_dict().keys()
    assert all(torch.equal(base[key], value) for key, value in start.state_dict().items())
    # the directory moves as a whole and still loads exactly
    shutil.move(tmp_path / "adapter", tmp_path / "moved")
    loaded, _ = load_finetuned(tmp_path / "moved")
    assert torch.equal(eval_logits(loaded, batch), eval_logits(ft, batch))


def test_trainable_tensors_of_each_method(tiny_bert: Path) -> None:
    def names(method: str, **options: object) -> set[str]:
        model = build_model(tiny_bert, "classification", LABELS["classification"], random_init=False, seed=1)
        ft = prepare(model, MethodConfig(name=method, total_steps=10, **options), "classification")
        trainable = ft.trainable()
        assert count_parameters(ft.model)[0] == sum(p.numel() for p in trainable.values())
        return set(trainable)

    def only(found: set[str], *parts: str) -> bool:
        return all(any(part in name for part in parts) for name in found)

    model = build_model(tiny_bert, "classification", LABELS["classification"], random_init=False, seed=1)
    assert names("full") == {name for name, _ in model.named_parameters()}

    for method in PEFT_METHODS:  # peft keeps a trainable copy of the head (modules_to_save)
        head = {f"base_model.model.classifier.modules_to_save.default.{p}" for p in ("weight", "bias")}
        if method in ("prompt", "prefix"):
            head = {name.replace("model.classifier", "classifier") for name in head}
        found = names(method)
        assert head <= found, method
        assert not any("pooler" in name or "original_module" in name for name in found), method
        rest = found - head
        if method == "lora":
            assert len(rest) == LAYERS * 2 * 2 and only(rest, "query.lora_", "value.lora_")
        elif method == "adalora":
            assert len(rest) == LAYERS * 2 * 3 and only(rest, "query.lora_", "value.lora_")
        elif method == "ia3":
            assert len(rest) == LAYERS * 4 and only(rest, ".ia3_l.")
            assert {name.split(".layer.0.")[1] for name in rest if ".layer.0." in name} == {
                f"{module}.ia3_l.default" for module in
                ("attention.self.key", "attention.self.value", "attention.output.dense", "output.dense")}
        else:
            assert rest == {"prompt_encoder.default.embedding.weight"}, method

    houlsby = names("adapter", adapter_size=8)
    pfeiffer = names("adapter", adapter_size=8, adapter_variant="pfeiffer")
    layer_norms = {name for name, _ in model.named_parameters() if ".LayerNorm." in name}
    head = {"classifier.weight", "classifier.bias"}
    assert layer_norms | head <= houlsby and layer_norms | head <= pfeiffer
    assert len(houlsby - layer_norms - head) == LAYERS * 2 * 4  # two bottlenecks × down/up × weight/bias
    assert {n for n in pfeiffer - layer_norms - head} == {
        f"bert.encoder.layer.{i}.output.dense.adapter.{p}.{t}" for i in range(LAYERS) for p in ("down", "up")
        for t in ("weight", "bias")}

    biases = {name for name, _ in model.named_parameters() if name.endswith(".bias")}
    assert names("bitfit") == biases | {"classifier.weight"}
    assert any("LayerNorm.bias" in name for name in biases)


def test_lora_on_a_minilm_sized_model_trains_under_one_percent() -> None:
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                        intermediate_size=1536, num_labels=2)
    torch.manual_seed(0)
    ft = prepare(BertForSequenceClassification(config), MethodConfig(name="lora", lora_r=8), "classification")
    trainable, total = count_parameters(ft.model)
    # query and value: 6 layers × 2 × (384×8 + 8×384), plus the 384×2 + 2 head
    assert trainable == 6 * 2 * 2 * 384 * 8 + 384 * 2 + 2
    assert trainable / total < 0.01


@pytest.mark.parametrize("method", ["prompt", "prefix"])
def test_virtual_tokens_leave_outputs_aligned_and_padding_neutral(tiny_bert: Path, method: str) -> None:
    batch = make_batch(tiny_bert, "tokens")
    model = build_model(tiny_bert, "tokens", LABELS["tokens"], random_init=False, seed=1)
    ft = prepare(model, MethodConfig(name=method, virtual_tokens=3), "tokens")
    ft.model.eval()
    logits = eval_logits(ft, batch)
    assert logits.shape[:2] == batch["input_ids"].shape
    # the shortest sentence alone, unpadded, gets the same per-token logits as inside the padded batch
    row = int(batch["attention_mask"].sum(1).argmin())
    length = int(batch["attention_mask"][row].sum())
    alone = {key: value[row:row + 1, :length] for key, value in batch.items()}
    torch.testing.assert_close(eval_logits(ft, alone)[0], logits[row, :length], rtol=0, atol=1e-5)
    # and the virtual tokens matter: changing them changes the logits
    with torch.no_grad():
        # (a random change: the embedding LayerNorm would cancel a constant shift)
        ft.model.prompt_encoder["default"].embedding.weight.add_(torch.randn_like(ft.model.prompt_encoder["default"].embedding.weight))
    assert not torch.allclose(eval_logits(ft, batch), logits)


def test_adalora_prunes_to_its_budget_and_regularises(tiny_bert: Path) -> None:
    ft, _ = trained(tiny_bert, "adalora", "classification", steps=10)
    penalty = ft.regularisation()
    assert isinstance(penalty, torch.Tensor) and penalty.item() > 0 and penalty.requires_grad
    kept = sum(int((p != 0).sum()) for name, p in ft.trainable().items() if ".lora_E." in name)
    # initial rank 4 on 2 matrices per layer, pruned to rank 2 on average by the end
    assert kept <= 2 * LAYERS * 2 < 4 * LAYERS * 2


def test_changed_or_missing_base_is_refused(tiny_bert: Path, tmp_path: Path) -> None:
    base = Path(shutil.copytree(tiny_bert, tmp_path / "base"))
    ft, _ = trained(base, "lora", "classification")
    save_finetuned(ft, load_tokenizer(base, 48), tmp_path / "adapter", base_dir=base)
    record = json.loads((tmp_path / "adapter" / "base_model.json").read_text())
    assert Path(record["path"]) == base.resolve() and not record["inside"]

    (base / "config.json").write_text((base / "config.json").read_text() + " ")
    with pytest.raises(UserError, match=r"adapter in .*adapter was trained on base .*base, whose config.json "
                                        r"changed; restore that base model or fine-tune again"):
        load_finetuned(tmp_path / "adapter")
    (base / "config.json").write_text((base / "config.json").read_text()[:-1])
    load_finetuned(tmp_path / "adapter")  # restored: loads again

    (base / "model.safetensors").unlink()
    with pytest.raises(UserError, match="which has no model.safetensors any more"):
        load_finetuned(tmp_path / "adapter")
    base.rename(tmp_path / "elsewhere")
    with pytest.raises(UserError, match="which no longer exists; restore that base model or fine-tune again"):
        load_finetuned(tmp_path / "adapter")


def test_a_directory_that_is_not_a_fine_tune_is_refused(tiny_bert: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"no ptk_method.json, so not a fine-tune saved by ptk; pass a seed"):
        load_finetuned(tiny_bert)
    ft, _ = trained(tiny_bert, "bitfit", "regression")
    save_finetuned(ft, load_tokenizer(tiny_bert, 48), tmp_path / "seed-1" / "adapter", base_dir=tiny_bert)
    with pytest.raises(UserError, match=r"it is a seed directory, pass .*seed-1/adapter"):
        load_finetuned(tmp_path / "seed-1")
    # tensors saved for another method do not load silently
    ft, _ = trained(tiny_bert, "adapter", "regression")
    save_finetuned(ft, load_tokenizer(tiny_bert, 48), tmp_path / "other", base_dir=tiny_bert)
    shutil.copy(tmp_path / "other" / "trained.safetensors", tmp_path / "seed-1" / "adapter")
    with pytest.raises(UserError, match="the tensors do not fit a bitfit fine-tune of its base model"):
        load_finetuned(tmp_path / "seed-1" / "adapter")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", ["full", "bitfit", "lora", "adalora", "ia3"])
def test_export_is_a_plain_model_with_the_same_logits(tiny_bert: Path, tmp_path: Path, method: str,
                                                       kind: str) -> None:
    from safetensors import safe_open
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    ft, batch = trained(tiny_bert, method, kind)
    save_finetuned(ft, load_tokenizer(tiny_bert, 48), tmp_path / "saved", base_dir=tiny_bert)
    export_merged(tmp_path / "saved", tmp_path / "export")
    with safe_open(str(tmp_path / "export" / "model.safetensors"), "pt") as weights:
        keys = set(weights.keys())
    assert not any(part in key for key in keys for part in ("lora_", "ia3_", "base_layer", "modules_to_save"))
    auto = AutoModelForTokenClassification if kind == "tokens" else AutoModelForSequenceClassification
    plain = auto.from_pretrained(tmp_path / "export").eval()
    assert plain.config.id2label == ft.hf_model.config.id2label
    inputs = {key: batch[key] for key in ("input_ids", "token_type_ids", "attention_mask")}
    with torch.no_grad():
        exported = plain(**inputs).logits
    exported = exported.squeeze(-1) if kind == "regression" else exported
    torch.testing.assert_close(exported, eval_logits(ft, batch), rtol=0, atol=1e-5)
    assert load_tokenizer(tmp_path / "export", 48).get_vocab() == load_tokenizer(tiny_bert, 48).get_vocab()


@pytest.mark.parametrize("method", ["adapter", "prompt", "prefix"])
def test_methods_that_cannot_merge_refuse_to_export(tiny_bert: Path, tmp_path: Path, method: str) -> None:
    ft, _ = trained(tiny_bert, method, "classification", steps=1)
    save_finetuned(ft, load_tokenizer(tiny_bert, 48), tmp_path / "saved", base_dir=tiny_bert)
    with pytest.raises(UserError, match=f"a {method} fine-tune cannot be merged into a plain model"):
        export_merged(tmp_path / "saved", tmp_path / "export")
    assert not (tmp_path / "export").exists()


def test_method_config_problems_and_options() -> None:
    assert MethodConfig().problems() == []
    problems = MethodConfig(name="lorra", lora_r=0, lora_dropout=1.0, virtual_tokens=0,
                            adapter_variant="bottleneck", adapter_size=0).problems()  # type: ignore[arg-type]
    assert problems == ["--method 'lorra': choose one of full, lora, adalora, ia3, prompt, prefix, adapter, "
                        "bitfit",
                        "--lora-r 0: must be an integer, at least 1",
                        "--virtual-tokens 0: must be an integer, at least 1",
                        "--adapter-size 0: must be an integer, at least 1",
                        "--lora-dropout 1.0: must be in [0, 1)",
                        "--adapter-variant 'bottleneck': choose houlsby or pfeiffer"]
    assert MethodConfig(name="lora", lora_r=4).to_dict() == {"name": "lora", "lora_r": 4, "lora_alpha": 16,
                                                             "lora_dropout": 0.1}
    assert MethodConfig(name="bitfit", lora_r=4).to_dict() == {"name": "bitfit"}
    adapter = MethodConfig(name="adapter", adapter_variant="pfeiffer")
    assert MethodConfig(**adapter.to_dict()) == adapter
    assert MethodConfig(name="prefix", virtual_tokens=7).virtual_positions == 7
    assert MethodConfig(name="lora", virtual_tokens=7).virtual_positions == 0


def test_load_tokenizer_counts_virtual_tokens_against_positions(tiny_bert: Path) -> None:
    assert load_tokenizer(tiny_bert, 60, virtual_tokens=4).pad_token_id is not None
    with pytest.raises(UserError, match="--max-seq-length 60 plus --virtual-tokens 5: the model at .* reads "
                                        "at most 64 positions"):
        load_tokenizer(tiny_bert, 60, virtual_tokens=5)
