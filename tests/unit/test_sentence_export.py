"""`ptk export --sentence-transformers`: sentence-transformers reads back ptk's own vectors, for cls and
mean pooling, from a pretrain run, a checkpoint, an HF BERT directory and the real MiniLM; bad input is
refused with one line and nothing written."""

from __future__ import annotations

import json
import typing
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import Result
from conftest import assert_clean_failure, build_tiny_bert
from safetensors import safe_open
from safetensors.torch import save_file
from typer.testing import CliRunner

from pretrain_cli.cli.app import app
from pretrain_cli.modeling.sentence import HEAD_FILE, POOLINGS, SENTENCE_CONFIG, encode_texts, load_encoder
from pretrain_cli.samples import resolve_input
from pretrain_cli.stages.export import ExportConfig, run
from pretrain_cli.store import Manifest, atomic_write_json, read_manifest

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()

# lengths from two tokens to past the recorded max_seq_length, so batches pad and one text is cut
TEXTS = ["Fine.", "A quiet, patient film about two brothers.",
         "The plot wanders, but the performances hold it together until the last reel.",
         " ".join(["An overlong review that keeps going"] * 12)]


@pytest.fixture(scope="module")
def simcse_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint as a simcse run writes it: BertForPreTraining weights, the tokenizer, the recorded
    pooling and length, and the training-only projection head beside the weights."""
    directory = build_tiny_bert(tmp_path_factory.mktemp("simcse") / "final")
    atomic_write_json(directory / SENTENCE_CONFIG, {"pooling": "cls", "max_seq_length": 24})
    torch.manual_seed(1)
    save_file({"projection.dense.weight": torch.randn(32, 32), "projection.dense.bias": torch.randn(32)},
              directory / HEAD_FILE)
    return directory


def ptk_vectors(model_dir: Path, pooling: str, max_length: int) -> np.ndarray:
    encoder, tokenizer, _ = load_encoder(model_dir)
    return encode_texts(encoder, tokenizer, TEXTS, pooling=pooling, max_length=max_length, batch_size=3)


def st_vectors(directory: Path) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(directory), device="cpu").encode(TEXTS, batch_size=3)


def export(*args: str | Path) -> Result:
    return runner.invoke(app, ["export", *map(str, args)])


@pytest.mark.parametrize(("options", "pooling", "length"), [
    ((), "cls", 24),                                      # what the run recorded
    (("--pooling", "mean", "--max-seq-length", "16"), "mean", 16),  # overridden
])
def test_sentence_transformers_gives_ptk_vectors(simcse_ckpt: Path, tmp_path: Path, options: tuple[str, ...],
                                                 pooling: str, length: int) -> None:
    out = tmp_path / "st"
    result = export(simcse_ckpt, "--sentence-transformers", out, *options)
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(st_vectors(out), ptk_vectors(simcse_ckpt, pooling, length), rtol=0, atol=1e-5)

    modules = json.loads((out / "modules.json").read_text())
    assert [m["path"] for m in modules] == ["", "1_Pooling"]  # no Normalize: ptk's vectors are raw
    assert json.loads((out / "sentence_bert_config.json").read_text()) == {"max_seq_length": length,
                                                                           "do_lower_case": False}
    assert json.loads((out / "1_Pooling" / "config.json").read_text())["pooling_mode_cls_token"] == (
        pooling == "cls")
    st_config = json.loads((out / "config_sentence_transformers.json").read_text())
    assert st_config["similarity_fn_name"] == "cosine"
    assert json.loads((out / "config.json").read_text())["architectures"] == ["BertModel"]
    assert f"`{pooling}` pooling" in (out / "README.md").read_text()
    # the export reads back in ptk with the pooling it was written with
    assert load_encoder(out)[2] == pooling and ptk_vectors(out, pooling, length).shape == (len(TEXTS), 32)

    # the encoder and its pooler, not the pretraining heads, and never the training-only projection
    assert not (out / HEAD_FILE).exists()
    with safe_open(str(out / "model.safetensors"), "pt") as weights:
        names = set(weights.keys())
    assert {"pooler.dense.weight", "embeddings.word_embeddings.weight"} <= names
    assert not any(n.startswith(("projection.", "cls.", "bert.")) for n in names)

    manifest = read_manifest(out, "export")
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} - {"manifest.json"}
    assert {s.file for s in manifest.shards} == on_disk
    assert manifest.extra == {"format": "sentence-transformers", "pooling": pooling, "max_seq_length": length,
                              "dimension": 32, "source": str(simcse_ckpt)}


def test_a_plain_bert_pools_mean_over_128_tokens(tmp_path: Path) -> None:
    """An MLM-only checkpoint (or any HF BERT) recorded nothing: mean pooling, 128 tokens."""
    model_dir = build_tiny_bert(tmp_path / "bert")
    out = tmp_path / "st"
    manifest = run(ExportConfig(run=model_dir, sentence_transformers=out))
    assert (manifest.extra["pooling"], manifest.extra["max_seq_length"]) == ("mean", 128)
    np.testing.assert_allclose(st_vectors(out), ptk_vectors(model_dir, "mean", 128), rtol=0, atol=1e-5)


def test_rerun_is_up_to_date_and_other_options_need_force(simcse_ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "st"
    run(ExportConfig(run=simcse_ckpt, sentence_transformers=out))
    stamp = (out / "manifest.json").stat().st_mtime_ns
    run(ExportConfig(run=simcse_ckpt, sentence_transformers=out))
    assert (out / "manifest.json").stat().st_mtime_ns == stamp
    result = export(simcse_ckpt, "--sentence-transformers", out, "--pooling", "mean")
    assert result.exit_code == 2 and "--force" in result.output
    again = run(ExportConfig(run=simcse_ckpt, sentence_transformers=out, pooling="mean", force=True))
    assert again.extra["pooling"] == "mean" and load_encoder(out)[2] == "mean"


@pytest.mark.slow
def test_minilm_round_trips_to_the_original_vectors(tmp_path: Path) -> None:
    """The real all-MiniLM-L6-v2 package: the export gives its vectors before its Normalize module."""
    from sentence_transformers import SentenceTransformer

    out = tmp_path / "minilm"
    result = export("sample:minilm", "--sentence-transformers", out)
    assert result.exit_code == 0, result.output
    original = SentenceTransformer(str(resolve_input("sample:minilm")), device="cpu").encode(TEXTS)
    exported = st_vectors(out)
    np.testing.assert_allclose(exported / np.linalg.norm(exported, axis=1, keepdims=True), original,
                               rtol=0, atol=1e-5)
    np.testing.assert_allclose(exported, ptk_vectors(resolve_input("sample:minilm"), "mean", 256),
                               rtol=0, atol=1e-5)
    assert read_manifest(out, "export").extra["max_seq_length"] == 256  # sentence_bert_config.json's


@pytest.mark.slow
def test_a_simcse_run_exports_its_final_checkpoint(tmp_path_factory: pytest.TempPathFactory,
                                                   tmp_path: Path) -> None:
    from pretrain_fixtures import fixed_examples

    from pretrain_cli.stages.pretrain import PretrainConfig
    from pretrain_cli.stages.pretrain import run as pretrain

    ckpt = tmp_path / "ckpt"
    pretrain(PretrainConfig(examples=fixed_examples(tmp_path_factory), out=ckpt, layers=1, hidden=32, heads=2,
                            objective="simcse", pooling="cls", max_steps=2, micro_batch_size=4, save_every=1,
                            keep_last=1))
    assert (ckpt / "final" / HEAD_FILE).is_file()
    from_run = run(ExportConfig(run=ckpt, sentence_transformers=tmp_path / "from-run"))
    assert from_run.extra["source"] == str(ckpt / "final") and from_run.extra["pooling"] == "cls"
    assert not (tmp_path / "from-run" / HEAD_FILE).exists()
    length = from_run.extra["max_seq_length"]
    np.testing.assert_allclose(st_vectors(tmp_path / "from-run"), ptk_vectors(ckpt / "final", "cls", length),
                               rtol=0, atol=1e-5)
    step = next(ckpt.glob("step-*"))
    from_step = run(ExportConfig(run=step, sentence_transformers=tmp_path / "from-step"))
    assert from_step.extra["source"] == str(step)


def test_plain_exports_hash_as_before_the_sentence_options(tmp_path: Path) -> None:
    plain = ExportConfig(run=tmp_path, out=tmp_path / "o", merge=True)
    assert set(plain.hashed_dict()) == {"run", "seed", "merge"}


def test_pooling_choices_are_the_library_s() -> None:
    hint = typing.get_type_hints(ExportConfig)["pooling"]
    assert typing.get_args(typing.get_args(hint)[0]) == POOLINGS


def bad_run(kind: str, root: Path, ckpt: Path) -> Path:
    """A RUN that --sentence-transformers must refuse. A finished stage's manifest alone stands for its
    output: the export refuses on the manifest before it reads anything else."""
    directory = root / kind
    if kind == "missing":
        return directory
    directory.mkdir()
    manifests = {"finetune-run": ("finetune", {"model": str(ckpt)}), "other-stage": ("mask", {}),
                 "plain-export": ("export", {"task": "sst2"})}
    if kind in manifests:
        stage, extra = manifests[kind]
        manifest = Manifest(stage=stage, config={}, config_hash="0", inputs={}, shards=[], stats={},
                            extra=extra)
        atomic_write_json(directory / "manifest.json", manifest.to_json())
    elif kind == "not-bert":
        (directory / "config.json").write_text('{"model_type": "gpt2"}')
    elif kind == "finetune-seed":
        (directory / "ptk_method.json").write_text("{}")
    elif kind in ("no-weights", "max-pooling", "null-length"):  # a real model, then spoiled
        for file in ckpt.iterdir():
            if file.is_file() and not (kind == "no-weights" and file.suffix == ".safetensors"):
                (directory / file.name).write_bytes(file.read_bytes())
        record = {"max-pooling": '{"pooling": "max", "max_seq_length": 64}',
                  "null-length": '{"pooling": "cls", "max_seq_length": null}'}.get(kind)
        if record:
            (directory / "sentence_embedding.json").write_text(record)
    return directory


@pytest.mark.parametrize(("kind", "needles"), [
    ("no-model", ("no config.json",)),
    ("missing", ("no such directory",)),
    ("not-bert", ("'gpt2'", "BERT")),
    ("finetune-run", ("fine-tune", "--merge --out")),
    ("finetune-seed", ("fine-tune", "--merge --out")),
    ("plain-export", ("fine-tune",)),
    ("other-stage", ("`ptk mask` output", "not a model")),
    ("no-weights", ("no *.safetensors weights",)),
    ("max-pooling", ("records 'max' pooling, which ptk does not compute", "--pooling cls or mean")),
    ("null-length", ("max_seq_length None is not a length in tokens",)),
])
def test_what_is_not_an_encoder_is_refused(simcse_ckpt: Path, tmp_path: Path, kind: str,
                                           needles: tuple[str, ...]) -> None:
    out = tmp_path / "st"
    result = export(bad_run(kind, tmp_path, simcse_ckpt), "--sentence-transformers", out)
    assert_clean_failure(result, out, *needles)
    assert not out.exists()
    if kind == "finetune-run":  # it names the base to export instead
        assert str(simcse_ckpt) in result.output.replace("\n", "")


@pytest.mark.parametrize(("args", "needles"), [
    (("--merge",), ("--merge applies only with --out",)),
    (("--seed", "1"), ("--seed applies only with --out",)),
    (("--max-seq-length", "256"), ("--max-seq-length 256", "128 positions")),
    (("--max-seq-length", "1"), ("--max-seq-length 1", "at least 2")),
])
def test_bad_options_are_refused_and_nothing_written(simcse_ckpt: Path, tmp_path: Path, args: tuple[str, ...],
                                                     needles: tuple[str, ...]) -> None:
    out = tmp_path / "st"
    assert_clean_failure(export(simcse_ckpt, "--sentence-transformers", out, *args), out, *needles)
    assert not out.exists()


def test_an_unknown_pooling_is_a_usage_error(simcse_ckpt: Path, tmp_path: Path) -> None:
    result = export(simcse_ckpt, "--sentence-transformers", tmp_path / "st", "--pooling", "max")
    assert result.exit_code == 2 and not (tmp_path / "st").exists()


@pytest.mark.parametrize(("args", "needles"), [
    (("--out", "{tmp}/a", "--sentence-transformers", "{tmp}/b"), ("exactly one of --out",)),
    ((), ("exactly one of --out",)),
    (("--out", "{tmp}/a", "--pooling", "cls"), ("--pooling applies only with --sentence-transformers",)),
    (("--out", "{tmp}/a", "--max-seq-length", "64"), ("--max-seq-length applies only with",)),
], ids=["both", "neither", "pooling-with-out", "length-with-out"])
def test_out_and_sentence_transformers_exclude_each_other(simcse_ckpt: Path, tmp_path: Path,
                                                          args: tuple[str, ...], needles: tuple[str, ...]
                                                          ) -> None:
    result = export(simcse_ckpt, *(a.format(tmp=tmp_path) for a in args))
    assert_clean_failure(result, tmp_path, *needles)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
