"""The maths of `ptk evaluate --embeddings` against brute-force references on small vectors, the STS
file formats it reads and every malformed record, and how RUNs resolve to encoders and seed groups."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch

from pretrain_cli.config import StageConfig, option
from pretrain_cli.errors import UserError
from pretrain_cli.stages.embedding_eval import (
    L2_GRID,
    alignment,
    encoder_names,
    fit_logistic,
    knn_predict,
    linear_probe,
    max_length,
    read_sts,
    resolve_encoder,
    seed_group_key,
    spearman,
    top_pairs,
    uniformity,
)
from pretrain_cli.store import StageOutput

pytestmark = pytest.mark.usefixtures("one_thread")


def blobs(n: int, dims: int, classes: int, spread: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian clusters around random centres, labels 0..classes-1 in turn."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dims)) * 3
    labels = np.arange(n) % classes
    return (centres[labels] + spread * rng.normal(size=(n, dims))).astype(np.float32), labels


# Linear probe.

def test_fit_logistic_reaches_the_regularised_optimum() -> None:
    x, y = blobs(60, 5, 3, spread=2.0, seed=1)
    x = x / x.std()  # unit scale, so the reference's fixed step converges quickly
    features, labels = torch.from_numpy(x).double(), torch.from_numpy(y).long()
    weight, bias = fit_logistic(features, labels, 3, l2=0.1)
    # reference: plain gradient descent on the same strongly convex objective, written out by hand
    w, b = np.zeros((5, 3)), np.zeros(3)
    onehot = np.eye(3)[y]
    for _ in range(3000):
        logits = x.astype(np.float64) @ w + b
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        w -= 0.5 * (x.T @ (p - onehot) / len(y) + 0.1 * w)
        b -= 0.5 * (p - onehot).mean(0)
    np.testing.assert_allclose(weight.numpy(), w, atol=1e-5)
    np.testing.assert_allclose(bias.numpy(), b, atol=1e-5)


def test_linear_probe_separates_clusters_the_same_way_every_time() -> None:
    x, y = blobs(200, 16, 4, spread=0.5, seed=2)
    first = linear_probe(x[:150], y[:150], x[150:], y[150:], 4)
    assert first[0] == 1.0 and first[1] in L2_GRID
    assert linear_probe(x[:150], y[:150], x[150:], y[150:], 4) == first
    # features are standardised with the train statistics, so their scale does not matter
    assert linear_probe(1000 * x[:150] + 7, y[:150], 1000 * x[150:] + 7, y[150:], 4) == first


def test_linear_probe_without_information_predicts_the_majority_and_keeps_the_strongest_l2() -> None:
    train_y, dev_y = np.array([0] * 30 + [1] * 10), np.array([0, 0, 0, 1])
    # constant features: every L2 strength predicts the majority class, so the tie keeps the first
    accuracy, l2 = linear_probe(np.ones((40, 3), np.float32), train_y, np.ones((4, 3), np.float32), dev_y, 2)
    assert (accuracy, l2) == (0.75, L2_GRID[0])


# kNN.

def brute_force_knn(train: np.ndarray, labels: np.ndarray, dev: np.ndarray, k: int) -> list[int]:
    predicted = []
    for row in dev:
        similarity = [float(row @ t / (np.linalg.norm(row) * np.linalg.norm(t))) for t in train]
        nearest = sorted(range(len(train)), key=lambda i: (-similarity[i], i))[:k]
        votes = [int(labels[i]) for i in nearest]
        best = max(votes.count(v) for v in votes)
        predicted.append(next(v for v in votes if votes.count(v) == best))
    return predicted


def test_knn_matches_a_brute_force_vote() -> None:
    rng = np.random.default_rng(3)
    train, dev = rng.normal(size=(80, 6)), rng.normal(size=(30, 6))
    labels = rng.integers(0, 3, size=80)
    for k in (1, 4, 10):
        assert knn_predict(train, labels, dev, k).tolist() == brute_force_knn(train, labels, dev, k)


def test_knn_tie_goes_to_the_nearest_label_and_scale_does_not_count() -> None:
    angles = np.radians([10, 20, 30, 40, 90])  # cosine to the query at 0°: nearest first
    train = np.stack([np.cos(angles), np.sin(angles)], 1) * np.array([[1], [50], [0.1], [3], [1]])
    query = np.array([[2.0, 0.0]])
    # k = 4: labels 1, 0, 0, 1 — two votes each, and label 1 holds the nearest neighbour
    assert knn_predict(train, np.array([1, 0, 0, 1, 0]), query, 4).tolist() == [1]
    assert knn_predict(train, np.array([0, 1, 1, 0, 1]), query, 4).tolist() == [0]
    # k larger than train: every row votes
    assert knn_predict(train, np.array([1, 0, 0, 1, 0]), query, 10).tolist() == [0]


# Alignment, uniformity, STS.

def test_alignment_and_uniformity_match_brute_force() -> None:
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(25, 8)), rng.normal(size=(25, 8))
    unit = [v / np.linalg.norm(v) for v in x]
    partner = [v / np.linalg.norm(v) for v in y]
    distances = [np.sum((a - b) ** 2) for a, b in zip(unit, partner, strict=True)]
    assert alignment(x, y) == pytest.approx(np.mean(distances))
    pairs = [np.exp(-2 * np.sum((unit[i] - unit[j]) ** 2)) for i in range(25) for j in range(i + 1, 25)]
    assert uniformity(x) == pytest.approx(math.log(np.mean(pairs)))


def test_alignment_and_uniformity_by_hand() -> None:
    assert alignment(np.array([[1.0, 0.0], [0.0, 3.0]]), np.array([[5.0, 0.0], [0.0, -1.0]])) == \
        pytest.approx((0 + 4) / 2)  # the same direction: 0; opposite: ‖2·u‖² = 4
    assert uniformity(np.array([[1.0, 0.0], [0.0, 2.0]])) == pytest.approx(-4.0)  # exp(-2 · 2)
    # many identical rows: every distance 0, the worst uniformity there is
    assert uniformity(np.ones((50, 3))) == pytest.approx(0.0)


def test_spearman_and_the_top_of_the_score_range() -> None:
    gold = np.array([0.0, 1.2, 2.5, 4.0, 4.8, 5.0])
    assert spearman(np.exp(gold), gold) == pytest.approx(1.0)  # any increasing function: 1
    assert spearman(-gold, gold) == pytest.approx(-1.0)
    # ties share their mean rank: x ranks 1.5 1.5 3 4, y ranks 1 2 3 4
    assert spearman(np.array([1.0, 1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0, 4.0])) == \
        pytest.approx(np.corrcoef([1.5, 1.5, 3, 4], [1, 2, 3, 4])[0, 1])
    assert top_pairs(gold).tolist() == [False, False, False, False, True, True]  # > 4 of 0–5, as SimCSE
    assert top_pairs(np.array([1.0, 2.0, 3.0])).tolist() == [False, False, True]  # > 2.6 of 1–3
    assert top_pairs(np.array([3.0, 3.0])).tolist() == [True, True]  # one score: every pair


# STS files.

PAIRS = [("A man with a hard hat is dancing.", "A man wearing a hard hat is dancing.", "5.000"),
         ('A man said "no".', "A woman is slicing an onion.", "0.250"),
         ("A young child is riding a horse.", "A child is riding a horse.", "4.750")]


def test_sts_formats_read_the_same_pairs(tmp_path: Path) -> None:
    expected = [(a, b, float(s)) for a, b, s in PAIRS]
    glue = tmp_path / "dev.tsv"
    glue.write_text("index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
                    + "".join(f"{i}\tmain-captions\tMSRvid\t2012test\t{i:04d}\tnone\tnone\t{a}\t{b}\t{s}\n"
                              for i, (a, b, s) in enumerate(PAIRS)))
    # the STS benchmark's own files: named .csv, tab-separated, no header, sometimes sources at the end
    benchmark = tmp_path / "sts-dev.csv"
    benchmark.write_text("".join(f"main-captions\tMSRvid\t2012test\t{i:04d}\t{s}\t{a}\t{b}"
                                 + ("\tsource-a\tsource-b" if i == 1 else "") + "\n"
                                 for i, (a, b, s) in enumerate(PAIRS)))
    comma = tmp_path / "pairs.csv"
    comma.write_text("sentence1,sentence2,score\n" + "".join(
        '"{}","{}",{}\n'.format(a.replace('"', '""'), b, s) for a, b, s in PAIRS))
    lines = tmp_path / "pairs.jsonl"
    lines.write_text("".join(json.dumps({"sentence1": a, "sentence2": b, "score": float(s)}) + "\n"
                             for a, b, s in PAIRS))
    for path in (glue, benchmark, comma, lines):
        assert [(e.text, e.text_pair, e.label) for e in read_sts(path)] == expected, path


def test_sts_jsonl_keeps_unicode_line_separators_inside_texts(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    records = [{"sentence1": "first\u2028line", "sentence2": "b\u0085c", "score": 1},
               {"sentence1": "x", "sentence2": "y", "score": 2}]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    assert [e.text for e in read_sts(path)] == ["first\u2028line", "x"]


@pytest.mark.parametrize(("name", "content", "needle"), [
    ("missing.csv", "sentence1,sentence2,similarity\na,b,1\nc,d,2\n", "no column 'score'"),
    ("missing.tsv", "sentence1\tsentence2\na\tb\n", "no column 'score'"),
    ("missing.jsonl", '{"sentence1": "a", "sentence2": "b", "score": 1}\n{"sentence1": "c", "score": 2}\n',
     "missing.jsonl line 2: no column 'sentence2'"),
    ("word.csv", "sentence1,sentence2,score\na,b,1\nc,d,high\n", "line 3: score 'high' is not a number"),
    ("word.jsonl", '{"sentence1": "a", "sentence2": "b", "score": true}\n', "score True is not a number"),
    ("nan.tsv", "sentence1\tsentence2\tscore\na\tb\tnan\nc\td\t2\n", "line 2: score 'nan' is not a number"),
    ("short.tsv", "genre\tMSRvid\t2012\t0001\t5.0\tonly one sentence\n", "short.tsv line 1: 6 tab-separated"),
    ("bench.csv", "g\tf\t2012\t1\t5.0\ta\tb\ng\tf\t2012\t2\tfive\tc\td\n", "line 2: score 'five'"),
    ("empty.csv", "sentence1,sentence2,score\na,,1\nc,d,2\n", "line 2: sentence2 is empty"),
    ("one.csv", "sentence1,sentence2,score\na,b,1\n", "1 sentence pair(s)"),
    ("fields.csv", "sentence1,sentence2,score\na,b,c,1\n", "line 2: 4 field(s)"),
    ("bad.jsonl", '{"sentence1": "a",\n', "bad.jsonl line 1: not valid JSON"),
])
def test_sts_malformed_records_are_one_line_errors(tmp_path: Path, name: str, content: str,
                                                   needle: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(UserError) as error:
        read_sts(path)
    assert needle in str(error.value) and "\n" not in str(error.value), str(error.value)


# RUNs: which directory loads, what it is called, which seeds belong together.

@dataclasses.dataclass(kw_only=True)
class FakePretrain(StageConfig):
    """Stands in for the pretrain stage's config: `out` unhashed, the rest hashed, as there."""

    stage: ClassVar[str] = "pretrain"
    out: Path = option(help="Output directory.", hashed=False)
    seed: int = option(0, "Seed.")
    preset: str = option("tiny", "Model size.")
    keep_last: int = option(2, "Unhashed in the real config too.", hashed=False)


def write_bert(directory: Path) -> Path:
    directory.mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps({"model_type": "bert", "max_position_embeddings": 64}))
    (directory / "model.safetensors").write_bytes(b"weights")
    (directory / "vocab.txt").write_text("[PAD]\n")
    return directory


def write_pretrain(out: Path, **config: object) -> Path:
    stage = StageOutput(FakePretrain(out=out, **config), out, owned=("final", "step-*"))  # type: ignore[arg-type]
    assert stage.up_to_date() is None
    write_bert(out / "final")
    shutil.copytree(out / "final", out / "step-00000100")
    stage.finish(extra={"final": "final", "global_batch": 32})
    return out


def test_runs_resolve_to_their_model_directories(tmp_path: Path) -> None:
    ckpt = write_pretrain(tmp_path / "s1" / "ckpt", seed=1)
    plain = write_bert(tmp_path / "bert")
    whole, final, step, other = (resolve_encoder(p) for p in (ckpt, ckpt / "final", ckpt / "step-00000100",
                                                              plain))
    assert whole.model_dir == final.model_dir == ckpt / "final"
    assert step.model_dir == ckpt / "step-00000100" and other.model_dir == plain
    assert whole.pretrain is not None and step.pretrain is not None and other.pretrain is None
    assert encoder_names([whole, step, other]) == ["ckpt", "ckpt/step-00000100", "bert"]
    minilm = resolve_encoder(Path("sample:minilm"))
    assert encoder_names([minilm, whole]) == ["sample:minilm", "ckpt"]
    assert minilm.model_dir.joinpath("config.json").is_file()


def test_seed_groups_share_everything_but_the_seed(tmp_path: Path) -> None:
    runs = {name: resolve_encoder(write_pretrain(tmp_path / name, **config)) for name, config in {
        "a": {"seed": 1}, "b": {"seed": 2, "keep_last": 5}, "c": {"seed": 3, "preset": "mini"}}.items()}
    keys = {name: seed_group_key(encoder) for name, encoder in runs.items()}
    assert keys["a"] == keys["b"] != keys["c"]
    # the same run's final and step checkpoints are different models
    assert seed_group_key(resolve_encoder(tmp_path / "a" / "step-00000100")) != keys["a"]
    assert seed_group_key(resolve_encoder(write_bert(tmp_path / "plain"))) is None


@pytest.mark.parametrize(("setup", "needle"), [
    (lambda d: d.mkdir(), "no config.json"),
    (lambda d: write_bert(d).joinpath("config.json").write_text('{"model_type": "gpt2"}'), "'gpt2'"),
    (lambda d: write_bert(d).joinpath("model.safetensors").unlink(), "no *.safetensors"),
    (lambda d: write_bert(d).joinpath("vocab.txt").unlink(), "no tokenizer"),
    (lambda d: write_bert(d).joinpath("config.json").write_text("[1]"), "not a JSON object"),
])
def test_runs_that_are_not_bert_model_directories(tmp_path: Path, setup, needle: str) -> None:
    directory = tmp_path / "model"
    setup(directory)
    with pytest.raises(UserError, match="^" + str(directory)) as error:
        resolve_encoder(directory)
    assert needle in str(error.value)


def test_runs_written_by_other_stages(tmp_path: Path) -> None:
    exported = write_bert(tmp_path / "exported")  # `ptk export` leaves a manifest in a model directory
    (exported / "manifest.json").write_text('{"stage": "export"}')
    assert resolve_encoder(exported).model_dir == exported
    finetune = tmp_path / "ft"
    finetune.mkdir()
    (finetune / "manifest.json").write_text('{"stage": "finetune"}')
    with pytest.raises(UserError, match=r"a fine-tune, whose weights answer a task.*--merge --out"):
        resolve_encoder(finetune)
    (finetune / "manifest.json").write_text("{")
    with pytest.raises(UserError, match="unreadable"):
        resolve_encoder(finetune)


def test_reports_without_embeddings_keep_their_config_hash(tmp_path: Path) -> None:
    from pretrain_cli.stages.evaluate import EMBEDDING_OPTIONS, EvaluateConfig

    plain = EvaluateConfig(runs=[tmp_path], out=tmp_path / "out")
    assert not set(EMBEDDING_OPTIONS) & set(plain.hashed_dict())  # as before --embeddings existed
    scored = EvaluateConfig(runs=[tmp_path], out=tmp_path / "out", embeddings=True)
    assert set(EMBEDDING_OPTIONS) <= set(scored.hashed_dict())
    assert scored.config_hash() != dataclasses.replace(scored, pooling="cls").config_hash()


def test_max_length_follows_the_model_records(tmp_path: Path) -> None:
    model = write_bert(tmp_path / "m")
    assert max_length(model) == 64  # 128 by default, cut to the 64 positions
    (model / "config.json").write_text(json.dumps({"model_type": "bert", "max_position_embeddings": 512}))
    assert max_length(model) == 128
    (model / "sentence_bert_config.json").write_text('{"max_seq_length": 256}')
    assert max_length(model) == 256
    (model / "sentence_embedding.json").write_text('{"pooling": "cls", "max_seq_length": 32}')
    assert max_length(model) == 32  # ptk's own record wins
    (model / "sentence_embedding.json").write_text('{"pooling": "cls"}')
    with pytest.raises(UserError, match="sentence_embedding.json: no max_seq_length in it"):
        max_length(model)
