"""SimCSE in `ptk pretrain`: the InfoNCE loss, its sentences, pairs, checkpoints, resume and processes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from pretrain_cli.errors import UserError
from pretrain_cli.modeling.sentence import info_nce
from pretrain_cli.stages.pretrain import PretrainConfig, run
from pretrain_cli.store import read_manifest
from pretrain_cli.training.data import PairExamples
from pretrain_cli.training.pairs import read_pairs

pytestmark = pytest.mark.usefixtures("one_thread")
SMALL = {"max_steps": 12, "micro_batch_size": 8, "log_every": 1, "save_every": 6, "learning_rate": 1e-3}


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def reference_info_nce(anchors: np.ndarray, candidates: np.ndarray, temperature: float, first: int) -> float:
    """InfoNCE written out term by term in float64: -log softmax of each anchor's positive."""
    total = 0.0
    for i, a in enumerate(anchors):
        sims = [float(a @ c) / (np.linalg.norm(a) * np.linalg.norm(c)) / temperature for c in candidates]
        top = max(sims)
        log_sum = top + np.log(sum(np.exp(s - top) for s in sims))
        total += log_sum - sims[first + i]
    return total


@pytest.mark.parametrize(("anchors", "candidates", "first", "temperature"),
                         [(4, 4, 0, 0.05), (3, 9, 3, 0.05), (5, 10, 0, 1.0), (2, 12, 6, 0.1),
                          (64, 128, 64, 0.05)])
def test_info_nce_matches_a_reference_implementation(anchors: int, candidates: int, first: int,
                                                     temperature: float) -> None:
    """Fixed embeddings, including an anchor block that is one process's share of a gathered batch
    (positives from `first` on) and hard negatives after the positives."""
    rng = np.random.default_rng(anchors * 100 + candidates)
    a, c = rng.normal(size=(anchors, 16)), rng.normal(size=(candidates, 16))
    c[first:first + anchors] += 0.5 * a  # positives resemble their anchors
    ours = info_nce(torch.tensor(a, dtype=torch.float32), torch.tensor(c, dtype=torch.float32), temperature,
                    first_positive=first)
    # the mean over anchors (the loss the loop reports) to 1e-6, fp32 against float64
    assert abs(float(ours) - reference_info_nce(a, c, temperature, first)) / anchors <= 1e-6


def test_unsupervised_sentences_are_each_examples_first_segment_unmasked(examples: Path) -> None:
    manifest = read_manifest(examples, "mask")
    train = PairExamples.from_manifest(manifest, "train", int(manifest.extra["vocab_size"]))
    mask_id, sep_id = manifest.extra["special_ids"]["mask"], manifest.extra["special_ids"]["sep"]
    batch = train.collate(np.arange(16), pad_id=0, segments=True)
    assert batch.anchors == 16 and batch.contrast_ids.shape[0] == 16
    restored = batch.input_ids.clone()
    restored[batch.mlm_rows, batch.mlm_cols] = batch.mlm_labels
    for row in range(16):
        length = int(batch.contrast_mask[row].sum())
        sentence = batch.contrast_ids[row, :length]
        assert sentence[-1] == sep_id and mask_id not in sentence.tolist()
        assert torch.equal(sentence, restored[row, :length])  # the first segment, masks put back
        assert batch.token_type_ids[row, :length].sum() == 0  # and only the first segment


def wiki_pairs(path: Path, count: int = 120, negatives: bool = True) -> Path:
    """Real supervised pairs: a Wikipedia article's short description and its lead's first sentence
    (and another article's first sentence as a hard negative)."""
    from pretrain_cli.stages.embedding_eval import description_pairs
    from pretrain_cli.tasks import TaskSource, load_task

    rows = description_pairs(load_task(TaskSource(task="wiki_topics")).train[:count + 20])[:count]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["anchor", "positive", *(["negative"] if negatives else [])])
        for i, (anchor, positive) in enumerate(rows):
            writer.writerow([anchor, positive, *([rows[(i + 7) % len(rows)][1]] if negatives else [])])
    return path


@pytest.fixture(scope="module")
def simcse_run(examples: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("simcse") / "ckpt"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the tests that resume it (module fixtures start before one_thread)
    try:
        run(PretrainConfig(examples=examples, out=out, objective="simcse", **SMALL))
    finally:
        torch.set_num_threads(threads)
    return out


def test_simcse_trains_and_keeps_its_head_out_of_the_model(simcse_run: Path) -> None:
    from transformers import BertForPreTraining

    trace = [r["simcse_loss"] for r in records(simcse_run)]
    assert all(r["mlm_loss"] == 0 and r["nsp_loss"] == 0 for r in records(simcse_run))
    assert all(0 <= r["padding"] < 0.5 for r in records(simcse_run))  # of the sentences read
    assert trace[-1] < trace[0] / 2  # an easy task at batch 8: the loss falls fast
    final = simcse_run / "final"
    assert json.loads((final / "sentence_embedding.json").read_text()) == {"pooling": "mean",
                                                                         "max_seq_length": 64}
    assert set(load_file(final / "projection.safetensors")) == {"projection.dense.weight",
                                                                "projection.dense.bias"}
    assert not any(k.startswith("projection") for k in load_file(final / "model.safetensors"))
    _, info = BertForPreTraining.from_pretrained(final, output_loading_info=True)
    assert not info["unexpected_keys"] and not info["missing_keys"]
    manifest = read_manifest(simcse_run, "pretrain")
    assert manifest.extra["objective"] == "simcse" and manifest.stats["simcse_loss"] == trace[-1]


def test_a_resumed_simcse_run_ends_bit_for_bit_where_an_uninterrupted_one_does(
        examples: Path, simcse_run: Path, tmp_path: Path) -> None:
    """Dropout stays on: the RNG states in the checkpoint make the resumed views the same draws."""
    resumed = tmp_path / "resumed"
    manifest = run(PretrainConfig(examples=examples, out=resumed, objective="simcse",
                                  resume=str(simcse_run / "step-00000006"), **SMALL))
    assert manifest.stats["resumed_from"].endswith("step-00000006")
    for name in ("model.safetensors", "projection.safetensors"):
        ours, theirs = load_file(resumed / "final" / name), load_file(simcse_run / "final" / name)
        assert all(torch.equal(ours[k], theirs[k]) for k in theirs), name
    assert [r["simcse_loss"] for r in records(resumed)] == [r["simcse_loss"] for r in records(simcse_run)][6:]


def test_mlm_plus_supervised_pairs_with_hard_negatives(examples: Path, tmp_path: Path) -> None:
    out = tmp_path / "ckpt"
    manifest = run(PretrainConfig(examples=examples, out=out, objective="mlm+simcse", simcse_weight=0.5,
                                  pairs=wiki_pairs(tmp_path / "pairs.csv"), **SMALL))
    rows = records(out)
    assert all(r["mlm_loss"] > 0 and r["simcse_loss"] > 0 and r["nsp_loss"] == 0 for r in rows)
    assert all(r["loss"] == pytest.approx(r["mlm_loss"] + 0.5 * r["simcse_loss"], rel=1e-6) for r in rows)
    # with 2 × 8 candidates per anchor, chance is log(16)
    assert rows[0]["simcse_loss"] == pytest.approx(np.log(16), abs=0.7)
    assert set(manifest.inputs) == {"examples", "pairs"}


def test_pair_files_read_in_both_spellings_and_refuse_bad_records(tmp_path: Path) -> None:
    jsonl = tmp_path / "nli.jsonl"
    jsonl.write_text('{"sent0": "a man plays", "sent1": "someone plays", "hard_neg": "nobody plays"}\n'
                     '{"sent0": "a dog runs", "sent1": "an animal moves", "hard_neg": "a cat sleeps"}\n')
    assert read_pairs(jsonl) == (["anchor", "positive", "negative"],
                                 [["a man plays", "a dog runs"], ["someone plays", "an animal moves"],
                                  ["nobody plays", "a cat sleeps"]])
    csv_file = tmp_path / "pairs.csv"
    csv_file.write_text("anchor,other\nx,y\n")
    with pytest.raises(UserError, match=r"pairs.csv line 2: no positive column \(the columns are anchor, "
                                        r"other\); name it positive or sent1"):
        read_pairs(csv_file)
    csv_file.write_text("anchor,positive\nx,y\nz,\n")
    with pytest.raises(UserError, match=r"pairs.csv line 3: no text in the positive column 'positive'"):
        read_pairs(csv_file)
    csv_file.write_text("anchor,positive\n")
    with pytest.raises(UserError, match=r"no records; give at least one"):
        read_pairs(csv_file)
    with pytest.raises(UserError, match=r"cannot read \.xlsx"):
        read_pairs(tmp_path / "pairs.xlsx")


def test_contrastive_options_are_checked_before_anything_runs(examples: Path, tmp_path: Path) -> None:
    pairs = wiki_pairs(tmp_path / "pairs.csv", count=10)
    with pytest.raises(UserError) as caught:
        PretrainConfig(examples=examples, out=tmp_path / "o", objective="mlm+nsp", pairs=pairs,
                       temperature=0, simcse_weight=-1).validate()
    message = str(caught.value)
    for needle in ("--pairs is for --objective simcse", "--temperature must be above 0",
                   "--simcse-weight must be above 0"):
        assert needle in message
    with pytest.raises(UserError) as caught:
        PretrainConfig(examples=examples, out=tmp_path / "o", objective="simcse", procs=2,
                       strategy="fsdp").validate()
    message = str(caught.value)
    for needle in ("--strategy fsdp: --objective simcse trains under DDP only; pass --strategy ddp",):
        assert needle in message
    with pytest.raises(UserError, match="--temperature goes with --objective simcse or mlm\\+simcse"):
        PretrainConfig(examples=examples, out=tmp_path / "o", objective="mlm", temperature=0.1).validate()
    # runs without SimCSE hash as before it existed (so they stay up to date); SimCSE runs hash
    # their contrastive batch, which a resume on another process count would change
    mlm = PretrainConfig(examples=examples, out=tmp_path / "o")
    assert not {"temperature", "pooling", "simcse_weight", "contrastive_batch"} & set(mlm.hashed_dict())
    simcse = PretrainConfig(examples=examples, out=tmp_path / "o", objective="simcse", micro_batch_size=16)
    assert simcse.hashed_dict()["contrastive_batch"] == 16
    assert simcse.config_hash() != PretrainConfig(examples=examples, out=tmp_path / "o", objective="simcse",
                                                  micro_batch_size=8, grad_accum=2).config_hash()
    with pytest.raises(UserError, match="no such file"):
        PretrainConfig(examples=examples, out=tmp_path / "o", objective="simcse",
                       pairs=tmp_path / "missing.csv").validate()
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
@pytest.mark.parametrize("objective", ["simcse", "mlm+simcse"])
def test_two_processes_gather_negatives_and_give_the_loss_trace_of_one(
        examples: Path, tmp_path: Path, objective: str) -> None:
    """Dropout off (its masks are drawn per process); one process reads 8 sentences per step, two
    read 4 each and gather the other's as negatives (gradients flowing back across processes), so
    both score every anchor against the same 8 candidates and train the same model. The pairs run
    adds hard negatives, gathered likewise."""
    common = {**SMALL, "dropout": 0.0, "max_steps": 8, "save_every": 4, "objective": objective,
              "pooling": "cls" if objective == "simcse" else "mean"}
    if objective == "mlm+simcse":
        common["pairs"] = wiki_pairs(tmp_path / "pairs.csv")
    one = run(PretrainConfig(examples=examples, out=tmp_path / "one", **{**common, "micro_batch_size": 8}))
    two = run(PretrainConfig(examples=examples, out=tmp_path / "two", procs=2,
                             **{**common, "micro_batch_size": 4}))
    assert two.stats["world_size"] == 2 and one.extra["global_batch"] == two.extra["global_batch"] == 8
    ours, theirs = records(tmp_path / "two"), records(tmp_path / "one")
    assert [r["tokens"] for r in ours] == [r["tokens"] for r in theirs]
    for a, b in zip(ours, theirs, strict=True):
        for key in ("loss", "mlm_loss", "simcse_loss"):
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-7), (a["step"], key)
    # Adam moves a weight by up to lr (1e-3) a step whatever its gradient's size, so float rounding
    # in a near-zero gradient may show as a few 1e-5; a wrong gradient would differ by whole steps
    for name in ("model.safetensors", "projection.safetensors"):
        x, y = load_file(tmp_path / "one" / "final" / name), load_file(tmp_path / "two" / "final" / name)
        assert max(float((x[k] - y[k]).abs().max()) for k in x) < 1e-4, name


@pytest.mark.parametrize("with_pairs", [False, True])
def test_the_memory_probe_batch_holds_the_longest_contrastive_rows(examples: Path, tmp_path: Path,
                                                                   with_pairs: bool) -> None:
    """On CUDA a run first trains one step on its most memory-hungry micro-batch; with SimCSE that
    batch must carry the sentences too, or the probe would pass and the run fail hours later."""
    from pretrain_cli.training.data import ContrastSource, SampleOrder
    from pretrain_cli.training.pairs import ContrastPairs
    from pretrain_cli.training.session import probe_batch

    manifest = read_manifest(examples, "mask")
    train = PairExamples.from_manifest(manifest, "train", int(manifest.extra["vocab_size"]))
    pairs = (ContrastPairs.from_file(wiki_pairs(tmp_path / "p.csv"), examples / "tokenizer", 64)
             if with_pairs else None)
    contrast = ContrastSource(mlm=True, pairs=pairs, pair_order=SampleOrder(len(pairs), 0) if pairs else None)
    batch = probe_batch(train, contrast, micro=8, pad_id=0)
    views = 3 if with_pairs else 1
    assert batch.anchors == 8 and batch.contrast_ids.shape[0] == 8 * views
    assert batch.contrast_ids.shape[1] % 8 == 0 and batch.input_ids.shape[1] % 8 == 0
    assert sorted(batch.attention_mask.sum(1).tolist()) == sorted(train.lengths())[-8:]
    if pairs is not None:
        totals = sum(np.diff(offsets) for _, offsets in pairs.views)
        assert int(batch.contrast_mask.sum()) == int(np.sort(totals)[-8:].sum())
