"""`ptk evaluate --embeddings`: how good each model's sentence embeddings are, on real data.

    ptk evaluate --embeddings work/simcse work/mlm sample:minilm --out work/embeddings
    ptk evaluate --embeddings work/simcse-s1 work/simcse-s2 --sts sts-dev.csv --pooling cls --out work/emb

Each RUN is an encoder: a `ptk pretrain` output (CKPT, read from its final/; CKPT/final; or a step-*
checkpoint), any HF BERT directory, a sentence-transformers directory, or `sample:minilm`. Its
sentences are pooled as it records (`--pooling auto`: ptk's sentence_embedding.json or a
sentence-transformers 1_Pooling/; mean where it says nothing) and cut at its recorded max_seq_length
(else sentence_bert_config.json's, else 128, never beyond its position table). Per run:

- probe: dev accuracy of a multinomial logistic regression on the frozen train embeddings, per
  probe task (features standardised with train statistics, L2 strength picked on a fixed 10% of
  train, then refit on all of it; full-batch L-BFGS, so the same numbers every time);
- kNN: dev accuracy of a cosine 10-nearest-neighbour majority vote against train (ties go to the
  label of the nearest neighbour among the tied);
- alignment and uniformity (Wang & Isola 2020) on L2-normalised embeddings: the mean squared
  distance of positive pairs (each wiki_topics dev article's short description and the first
  sentence of its lead section), and log mean exp(-2 × squared distance) over distinct pairs of the
  probe tasks' dev sentences (a fixed subset of at most 2,000); lower is better for both;
- with `--sts FILE`: Spearman correlation between cosine similarity and the gold score, and the
  alignment of the file's pairs scored in the top 20% of its score range (SimCSE's STS-B > 4 of 5).

`ptk pretrain` runs with the same config apart from `seed` form a group, reported as mean ± sample
standard deviation over its seeds beside its runs.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pretrain_cli.console import say
from pretrain_cli.errors import UserError
from pretrain_cli.modeling.finetuned import model_files
from pretrain_cli.modeling.sentence import (
    DEFAULT_MAX_LENGTH,
    find_encoder,
    recorded_max_seq_length,
    sentence_files,
)
from pretrain_cli.samples import resolve_input, sample_path
from pretrain_cli.stages.evaluate import OWNED, EvaluateConfig, run_names, spread
from pretrain_cli.store import Manifest, StageOutput, atomic_write_bytes, atomic_write_json, files_input
from pretrain_cli.tasks import Example, TaskData, TaskSource, hash_subset, load_task
from pretrain_cli.tasks.data import text_hash
from pretrain_cli.tasks.files import number, read_delimited, read_json
from pretrain_cli.tasks.offline import OFFLINE_TASKS

if TYPE_CHECKING:
    import torch

ALIGNMENT_TASK = "wiki_topics"  # its articles carry the short descriptions the positive pairs need
KNN_K = 10
L2_GRID = (1.0, 1e-1, 1e-2, 1e-3, 1e-4)  # strongest first, so a tie keeps the simpler model
HELD_OUT = 0.1  # share of train that picks the L2 strength
LBFGS_ITERATIONS = 500
UNIFORMITY_MAX = 2000  # sentences; their pairs grow with the square
ENCODE_BATCH = 128
STS_TOP = 0.2  # the share of an STS file's score range whose pairs count as positives
STS_SUFFIXES = (".tsv", ".csv", ".jsonl", ".json")
STS_COLUMNS = ("sentence1", "sentence2", "score")
# the STS benchmark's own files (sts-dev.csv, ...): tab-separated, no header, sources after these
BENCHMARK_COLUMNS = ("genre", "file", "year", "id", "score", "sentence1", "sentence2")


@dataclasses.dataclass(frozen=True)
class Encoder:
    given: str  # the RUN as typed
    model_dir: Path  # the directory that loads
    shown: Path  # what its name comes from: CKPT for CKPT/final, else model_dir
    pretrain: Manifest | None  # the `ptk pretrain` run it is a checkpoint of


@dataclasses.dataclass(frozen=True)
class StsFile:
    name: str  # the file's name (with parents where two clash): its column in the report
    path: Path
    pairs: list[Example]  # text, text_pair, label = gold score


@dataclasses.dataclass(frozen=True)
class EvalData:
    probes: list[TaskData]
    alignment: list[tuple[str, str]]  # (short description, first sentence of the lead)
    uniformity: np.ndarray  # rows of the probe tasks' dev sentences, concatenated in task order
    sts: list[StsFile]
    files: list[Path]  # every data file read, for the up-to-date check


# Options and runs.

def embedding_problems(cfg: EvaluateConfig) -> list[str]:
    """Everything wrong with an `--embeddings` run's options and RUNs, checked before anything loads."""
    problems = []
    if cfg.examples is not None or cfg.compare:
        problems.append("--embeddings scores sentence embeddings; --examples and --compare go with pretrain "
                        "and fine-tune runs: drop them, or run those reports separately")
    encoders = []
    for run in cfg.runs:
        try:
            encoders.append(resolve_encoder(run))
        except UserError as error:
            problems.append(str(error))
    # CKPT and CKPT/final are one model; the same path twice is EvaluateConfig's "named twice"
    models = [e.model_dir.resolve() for e in encoders]
    for i, encoder in enumerate(encoders):
        if models[i] in models[:i]:
            first = encoders[models.index(models[i])]
            if Path(first.given).resolve() != Path(encoder.given).resolve():
                problems.append(f"{encoder.given}: the same model as {first.given}; name each model once")
    if not cfg.probe_tasks:
        problems.append("--probe-tasks: name at least one task")
    usable = sorted(t for t, task in OFFLINE_TASKS.items() if task.kind == "classification")
    problems += [f"--probe-tasks {task}: not a sentence classification task that ships with ptk; choose "
                 f"from {', '.join(usable)}" for task in cfg.probe_tasks if task not in usable]
    problems += [f"--probe-tasks {task}: named twice" for i, task in enumerate(cfg.probe_tasks)
                 if task in cfg.probe_tasks[:i]]
    for path in cfg.sts:
        if path.suffix.lower() not in STS_SUFFIXES:
            problems.append(f"--sts {path}: cannot read {path.suffix or 'a file without an extension'}; "
                            f"give {', '.join(STS_SUFFIXES)}")
        elif not path.is_file():
            problems.append(f"--sts {path}: no such file")
    sts = [p.resolve() for p in cfg.sts]
    problems += [f"--sts {p}: named twice" for i, p in enumerate(cfg.sts) if sts[i] in sts[:i]]
    if cfg.limit != 0 and cfg.limit < 10:
        problems.append("--limit must be 0 (every example) or at least 10 (the probe holds out 10% of train)")
    return problems


def resolve_encoder(run: Path) -> Encoder:
    """The model directory a RUN names, and the `ptk pretrain` run it belongs to (if any)."""
    model_dir, shown, pretrain = find_encoder(resolve_input(run))
    return Encoder(given=str(run), model_dir=model_dir, shown=shown, pretrain=pretrain)


def encoder_names(encoders: list[Encoder]) -> list[str]:
    """`sample:NAME` as typed; otherwise the directory's name with as many parents as it takes to be
    unique, and a step checkpoint always with its run's name (`ckpt/step-00001000`)."""
    names = run_names([e.shown for e in encoders])
    return [e.given if e.given.startswith("sample:")
            else f"{e.shown.parent.name}/{n}" if e.pretrain is not None and e.shown == e.model_dir
            and "/" not in n else n for e, n in zip(encoders, names, strict=True)]


def encoder_files(directory: Path) -> list[Path]:
    return model_files(directory, weights=True) + sentence_files(directory)


def max_length(directory: Path) -> int:
    """The length sentences are cut at: what the model records, else 128; within its position table."""
    limit = recorded_max_seq_length(directory) or DEFAULT_MAX_LENGTH
    positions = json.loads((directory / "config.json").read_text()).get("max_position_embeddings", limit)
    return min(limit, int(positions))


def seed_group_key(encoder: Encoder) -> str | None:
    """What a pretrain checkpoint shares with its other seeds: the config that changes the output
    (every hashed field but `seed`), the examples it read and which checkpoint it is."""
    if encoder.pretrain is None:
        return None
    from pretrain_cli.stages import config_class

    fields = dataclasses.fields(config_class("pretrain"))
    unhashed = {f.name for f in fields if not f.metadata.get("hashed", True)}
    manifest = encoder.pretrain
    config = {k: v for k, v in manifest.config.items() if k not in unhashed and k != "seed"}
    # SimCSE's negatives are the micro-batches of every process: runs that differ there differ
    contrastive = ("simcse" in str(manifest.extra.get("objective"))
                   and manifest.config["micro_batch_size"] * manifest.stats["world_size"])
    return json.dumps({"config": config, "global_batch": manifest.extra.get("global_batch"),
                       "contrastive_batch": contrastive,
                       "inputs": manifest.inputs, "checkpoint": encoder.model_dir.name}, sort_keys=True)


# STS files.

def read_sts(path: Path) -> list[Example]:
    """An STS file's (sentence1, sentence2, score) pairs: a GLUE STS-B TSV or any CSV/TSV with a header
    naming sentence1, sentence2 and score; the STS benchmark's headerless tab-separated files (genre,
    file, year, id, score, sentence1, sentence2, sources); or JSON lines with those three keys."""
    if path.suffix.lower() in (".jsonl", ".json"):
        records: Iterator[tuple[str, dict[str, Any]]] = read_json(path)
    else:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            first = next((line for line in handle if line.strip()), "")
        tabs = "\t" in first
        # tab-separated without a single STS column name on its first line: the benchmark's own layout
        if tabs and not set(STS_COLUMNS) & {field.strip() for field in first.split("\t")}:
            records = read_benchmark(path)
        else:
            columns, records = read_delimited(path, tabs)
            check_sts_columns(str(path), columns)
    pairs = []
    for where, record in records:
        check_sts_columns(where, list(record))
        pairs.append(sts_pair(where, record))
    if len(pairs) < 2:
        raise UserError(f"{path}: {len(pairs)} sentence pair(s); a correlation needs at least 2")
    return pairs


def read_benchmark(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """The STS benchmark's layout; text holds bare quotes, so fields split on tabs alone."""
    records = []
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        for row in reader:
            if not any(field.strip() for field in row):
                continue
            where = f"{path} line {reader.line_num}"
            if len(row) < len(BENCHMARK_COLUMNS):
                raise UserError(f"{where}: {len(row)} tab-separated field(s), expected at least "
                                f"{len(BENCHMARK_COLUMNS)} ({', '.join(BENCHMARK_COLUMNS)}) as in the STS "
                                f"benchmark, or a header row naming {', '.join(STS_COLUMNS)}; fix the line")
            records.append((where, dict(zip(BENCHMARK_COLUMNS, row, strict=False))))
    return iter(records)


def check_sts_columns(where: str, columns: list[str]) -> None:
    missing = [c for c in STS_COLUMNS if c not in columns]
    if missing:
        raise UserError(f"{where}: no column {', '.join(repr(c) for c in missing)} (the columns are "
                        f"{', '.join(columns) or 'none'}); an STS file needs {', '.join(STS_COLUMNS)}")


def sts_pair(where: str, record: dict[str, Any]) -> Example:
    for column in STS_COLUMNS[:2]:
        if not isinstance(record[column], str) or not record[column].strip():
            raise UserError(f"{where}: {column} is empty or not text; fill it in or remove the record")
    score = number(record["score"])
    if score is None or not math.isfinite(score):
        raise UserError(f"{where}: score {record['score']!r} is not a number; give the pair's similarity "
                        f"score or remove the record")
    return Example(record["sentence1"], record["sentence2"], score)


# Data.

def load_data(cfg: EvaluateConfig) -> EvalData:
    """Every sentence the report encodes, read (and any bad record refused) before a byte is written."""
    limited = [limit_task(load_task(TaskSource(task=t)), cfg.limit) for t in cfg.probe_tasks]
    by_name = {task.name: task for task in limited}
    wiki = by_name.get(ALIGNMENT_TASK) or limit_task(load_task(TaskSource(task=ALIGNMENT_TASK)), cfg.limit)
    names = run_names(cfg.sts)
    sts = [StsFile(name, path, hash_subset(read_sts(path), cfg.limit)) for name, path in zip(names, cfg.sts,
                                                                                            strict=True)]
    dev = [e for task in limited for e in task.dev]
    # a fixed subset, by text hash: the same sentences for every run and every rerun
    chosen = sorted(range(len(dev)), key=lambda i: text_hash(dev[i], "uniformity"))[:UNIFORMITY_MAX]
    alignment_pairs = description_pairs(wiki.dev)
    if not alignment_pairs:
        raise UserError(f"--limit {cfg.limit} leaves no {ALIGNMENT_TASK} dev article with a short "
                        f"description to measure alignment on; raise --limit")
    files = [*dict.fromkeys(f for task in [*limited, wiki] for f in task.files), *cfg.sts]
    return EvalData(probes=limited, alignment=alignment_pairs, uniformity=np.sort(chosen), sts=sts,
                    files=files)


def limit_task(task: TaskData, limit: int) -> TaskData:
    return dataclasses.replace(task, train=hash_subset(task.train, limit), dev=hash_subset(task.dev, limit))


def description_pairs(dev: list[Example]) -> list[tuple[str, str]]:
    """(short description, first sentence of the lead) of each wiki_topics dev article that has one."""
    from pretrain_cli.stages.corpus.sentences import split_sentences

    summaries = json.loads(sample_path("wiki_summaries").read_text(encoding="utf-8"))
    descriptions = {a["extract"]: (a.get("description") or "").strip() for a in summaries.values()}
    pairs = []
    for example in dev:
        text = str(example.text)
        sentences = split_sentences(text)
        if descriptions.get(text) and sentences:
            pairs.append((descriptions[text], sentences[0]))
    return pairs


# The metrics: numpy in, floats out.

def standardise(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    """Features centred and scaled by the train statistics (a constant feature is left unscaled)."""
    import torch

    mean, std = train.mean(0), train.std(0, unbiased=False)
    std = torch.where(std > 1e-12, std, torch.ones_like(std))
    return [(x - mean) / std for x in (train, *others)]


def fit_logistic(features: torch.Tensor, labels: torch.Tensor, num_classes: int,
                 l2: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights and bias minimising mean cross-entropy + l2/2 × ‖weights‖² (the bias is not
    penalised), from zero by full-batch L-BFGS: no sampling, so the same data give the same model."""
    import torch
    import torch.nn.functional as F

    weight = torch.zeros(features.shape[1], num_classes, dtype=features.dtype, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=features.dtype, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=LBFGS_ITERATIONS, history_size=20,
                                  tolerance_grad=1e-9, tolerance_change=1e-12, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(features @ weight + bias, labels) + 0.5 * l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return weight.detach(), bias.detach()


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, dev_x: np.ndarray, dev_y: np.ndarray,
                 num_classes: int) -> tuple[float, float]:
    """Dev accuracy of a logistic regression on standardised train features, and the L2 strength it
    used: the grid value scoring best on a fixed 10% of train, refit on all of train."""
    import torch

    x, dev = standardise(torch.from_numpy(train_x).double(), torch.from_numpy(dev_x).double())
    y, gold = torch.from_numpy(np.asarray(train_y)).long(), torch.from_numpy(np.asarray(dev_y)).long()
    held = np.zeros(len(y), dtype=bool)
    held[np.random.default_rng(0).permutation(len(y))[:max(1, round(HELD_OUT * len(y)))]] = True
    held_t = torch.from_numpy(held)
    scores = [accuracy(*fit_logistic(x[~held_t], y[~held_t], num_classes, l2), x[held_t], y[held_t])
              for l2 in L2_GRID]
    l2 = L2_GRID[int(np.argmax(scores))]  # the first best: the strongest
    return accuracy(*fit_logistic(x, y, num_classes, l2), dev, gold), l2


def accuracy(weight: torch.Tensor, bias: torch.Tensor, features: torch.Tensor, labels: torch.Tensor) -> float:
    return float(((features @ weight + bias).argmax(1) == labels).double().mean())


def normalised(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def knn_predict(train_x: np.ndarray, train_y: np.ndarray, dev_x: np.ndarray, k: int = KNN_K) -> np.ndarray:
    """Each dev row's majority label among its k most cosine-similar train rows; a tie goes to the
    tied label whose member is nearest (equal similarities: the earlier train row is nearer)."""
    train, dev, labels = normalised(train_x), normalised(dev_x), np.asarray(train_y)
    k = min(k, len(train))
    predicted = np.empty(len(dev), dtype=labels.dtype)
    for start in range(0, len(dev), 1024):  # a block of similarities at a time bounds the memory
        similarity = dev[start:start + 1024] @ train.T
        nearest = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
        for row, neighbours in enumerate(labels[nearest]):
            values, counts = np.unique(neighbours, return_counts=True)
            tied = set(values[counts == counts.max()].tolist())
            predicted[start + row] = next(label for label in neighbours if label in tied)
    return predicted


def knn_accuracy(train_x: np.ndarray, train_y: np.ndarray, dev_x: np.ndarray, dev_y: np.ndarray,
                 k: int = KNN_K) -> float:
    return float(np.mean(knn_predict(train_x, train_y, dev_x, k) == np.asarray(dev_y)))


def alignment(x: np.ndarray, y: np.ndarray) -> float:
    """Mean squared distance between the normalised embeddings of positive pairs (row i of x and y)."""
    return float(np.mean(np.sum((normalised(x) - normalised(y)) ** 2, axis=1)))


def uniformity(x: np.ndarray) -> float:
    """log mean over distinct pairs of exp(-2 × squared distance) of the normalised rows."""
    import torch

    unit = torch.from_numpy(normalised(x))
    rows, cols = torch.triu_indices(len(unit), len(unit), offset=1)
    # unit vectors: ‖a − b‖² = 2 − 2 a·b; logsumexp keeps the small exponentials from underflowing
    squared = (2 - 2 * (unit @ unit.T)[rows, cols]).clamp(min=0)
    return float(torch.logsumexp(-2 * squared, 0) - math.log(len(squared)))


def cosine(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.sum(normalised(x) * normalised(y), axis=1)


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    from pretrain_cli.tasks.metrics import pearson, ranks

    return pearson(ranks(np.asarray(x, dtype=np.float64)), ranks(np.asarray(y, dtype=np.float64)))


def top_pairs(scores: np.ndarray) -> np.ndarray:
    """Which pairs score above the bottom 1 - STS_TOP of the file's score range (SimCSE: STS-B > 4);
    every pair when all scores are equal."""
    low, high = float(scores.min()), float(scores.max())
    return scores > high - STS_TOP * (high - low) if high > low else np.ones(len(scores), dtype=bool)


# Scoring a run.

def score_encoder(encoder: Encoder, name: str, pooling_option: str, data: EvalData) -> dict[str, Any]:
    import torch

    from pretrain_cli.modeling.sentence import encode_texts, load_encoder

    started = time.perf_counter()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, tokenizer, pooling = load_encoder(encoder.model_dir, device,
                                             pooling=None if pooling_option == "auto" else pooling_option)
    length = max_length(encoder.model_dir)

    def encode(texts: list[str]) -> np.ndarray:
        with torch.inference_mode():
            return encode_texts(model, tokenizer, texts, pooling=pooling, batch_size=ENCODE_BATCH,
                                max_length=length)

    metrics: dict[str, float] = {}
    l2: dict[str, float] = {}
    dev_vectors = []
    for task in data.probes:
        train_x, dev_x = encode([str(e.text) for e in task.train]), encode([str(e.text) for e in task.dev])
        train_y, dev_y = np.array([e.label for e in task.train]), np.array([e.label for e in task.dev])
        metrics[f"probe_accuracy/{task.name}"], l2[task.name] = linear_probe(train_x, train_y, dev_x, dev_y,
                                                                             len(task.labels))
        metrics[f"knn_accuracy/{task.name}"] = knn_accuracy(train_x, train_y, dev_x, dev_y)
        dev_vectors.append(dev_x)
    descriptions, first_sentences = (list(side) for side in zip(*data.alignment, strict=True))
    metrics["alignment"] = alignment(encode(descriptions), encode(first_sentences))
    metrics["uniformity"] = uniformity(np.concatenate(dev_vectors)[data.uniformity])
    for sts in data.sts:
        first = encode([str(e.text) for e in sts.pairs])
        second = encode([str(e.text_pair) for e in sts.pairs])
        gold = np.array([float(e.label) for e in sts.pairs])
        metrics[f"sts_spearman/{sts.name}"] = spearman(cosine(first, second), gold)
        top = top_pairs(gold)
        metrics[f"sts_alignment/{sts.name}"] = alignment(first[top], second[top])
    seed = encoder.pretrain.config.get("seed") if encoder.pretrain is not None else None
    return {"name": name, "path": encoder.given, "model": str(encoder.model_dir), "pooling": pooling,
            "max_seq_length": length, "dims": int(model.config.hidden_size), "seed": seed,
            "metrics": metrics, "probe_l2": l2, "seconds": round(time.perf_counter() - started, 1)}


def seed_groups(encoders: list[Encoder], records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per group of at least two runs that differ only in seed: every metric's mean ± sample std."""
    members: dict[str, list[int]] = {}
    for i, encoder in enumerate(encoders):
        key = seed_group_key(encoder)
        if key is not None:
            members.setdefault(key, []).append(i)
    groups = []
    for indices in members.values():
        if len(indices) < 2:
            continue
        chosen = [records[i] for i in indices]
        groups.append({"runs": [r["name"] for r in chosen], "seeds": [r["seed"] for r in chosen],
                       "pooling": chosen[0]["pooling"], "dims": chosen[0]["dims"],
                       "metrics": {m: spread([r["metrics"][m] for r in chosen])
                                   for m in chosen[0]["metrics"]}})
    return groups


def run(cfg: EvaluateConfig) -> Manifest:
    """Score every RUN's embeddings; report.json's "embeddings" section, report.md, the table on stdout."""
    from pretrain_cli.stages.report import embeddings_markdown, embeddings_table

    encoders = [resolve_encoder(path) for path in cfg.runs]
    names = encoder_names(encoders)
    data = load_data(cfg)
    inputs = {f"run-{i}": files_input("model", encoder_files(e.model_dir)) for i, e in enumerate(encoders)}
    out = StageOutput(cfg, cfg.out, inputs=inputs | {"data": files_input("data", data.files)}, owned=OWNED)
    if (done := out.up_to_date()) is not None:
        print(embeddings_table(json.loads((cfg.out / "report.json").read_text())["embeddings"]))
        return done
    records = []
    for encoder, name in zip(encoders, names, strict=True):
        say(f"evaluate: encoding with {name} ({encoder.model_dir})")
        records.append(score_encoder(encoder, name, cfg.pooling, data))
        say(f"evaluate: {name} scored in {records[-1]['seconds']:.1f} s")
    section = {
        "probe_tasks": [{"task": t.name, "labels": len(t.labels), "train_examples": len(t.train),
                         "dev_examples": len(t.dev)} for t in data.probes],
        "knn_k": KNN_K, "alignment_pairs": len(data.alignment), "uniformity_sentences": len(data.uniformity),
        "sts": [{"name": s.name, "file": str(s.path), "pairs": len(s.pairs),
                 "positive_pairs": int(top_pairs(np.array([float(e.label) for e in s.pairs])).sum())}
                for s in data.sts],
        "limit": cfg.limit, "columns": list(records[0]["metrics"]), "runs": records,
        "groups": seed_groups(encoders, records)}
    report = {"title": cfg.title, "embeddings": section}
    atomic_write_json(cfg.out / "report.json", report)
    atomic_write_bytes(cfg.out / "report.md", embeddings_markdown(report).encode())
    for name in ("report.json", "report.md"):
        out.record_file(name)
    say(f"evaluate: report in {cfg.out / 'report.md'}")
    print(embeddings_table(section))  # stdout, so `ptk evaluate --embeddings ... > table.md` works
    return out.finish(stats={"embedding_runs": len(records), "seed_groups": len(section["groups"])})
