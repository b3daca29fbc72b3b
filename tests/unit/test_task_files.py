"""Tasks from the user's own files: every format reads the same real examples, the task kind and label
set follow from the data, and every malformed input is one line naming the file, the record and the fix."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pretrain_cli.errors import UserError
from pretrain_cli.samples import sample_path
from pretrain_cli.tasks import Example, TaskSource, load_task, task_problems


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def write_csv(path: Path, rows: list[list[object]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)
    return path


def load(path: Path, **options: object) -> object:
    return load_task(TaskSource(str(path), **options))  # type: ignore[arg-type]


def fails(match: str, path: Path, **options: object) -> str:
    with pytest.raises(UserError, match=match) as error:
        load(path, **options)
    message = str(error.value)
    assert "\n" not in message
    return message


# -- the real samples, written in each format, read back the same -------------------------------------


@pytest.fixture(scope="module")
def reviews() -> object:
    return load_task(TaskSource("rotten_tomatoes"))


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".json", ".arrow", ".parquet"])
def test_every_table_format_reads_the_real_reviews(tmp_path: Path, reviews: object, suffix: str) -> None:
    examples = reviews.train + reviews.dev  # type: ignore[attr-defined]
    records = [{"sentence": e.text, "sentiment": ("neg", "pos")[e.label]} for e in examples]
    path = tmp_path / f"reviews{suffix}"
    if suffix == ".csv":
        write_csv(path, [["sentence", "sentiment"], *[[r["sentence"], r["sentiment"]] for r in records]])
    elif suffix == ".tsv":
        path.write_text("sentence\tsentiment\n" + "".join(f"{r['sentence']}\t{r['sentiment']}\n"
                                                          for r in records), encoding="utf-8")
    elif suffix == ".jsonl":
        write_jsonl(path, records)
    elif suffix == ".json":
        path.write_text(json.dumps(records), encoding="utf-8")  # one array of objects
    elif suffix == ".arrow":
        with pa.ipc.new_file(str(path), pa.Table.from_pylist(records).schema) as writer:
            writer.write_table(pa.Table.from_pylist(records))
    else:
        pq.write_table(pa.Table.from_pylist(records), path)
    data = load(path, text_column="sentence", label_column="sentiment")
    assert (data.name, data.kind, data.labels, data.metric) == ("reviews", "classification", ("neg", "pos"),
                                                                "accuracy")
    # no --dev-file: the same stratified 10% hash split as the shipped task
    assert data.train == reviews.train and data.dev == reviews.dev  # type: ignore[attr-defined]
    assert data.files == (path,)


def test_arrow_stream_as_datasets_writes_it(tmp_path: Path) -> None:
    table = pa.Table.from_pylist([{"text": f"review {i}", "label": i % 2} for i in range(40)])
    with pa.ipc.new_stream(str(tmp_path / "train.arrow"), table.schema) as writer:
        writer.write_table(table)
    data = load(tmp_path / "train.arrow")
    assert data.labels == ("0", "1") and len(data.train) + len(data.dev) == 40 and len(data.dev) == 4


def test_the_real_ner_file_is_a_conll_task(tmp_path: Path) -> None:
    shipped = load_task(TaskSource("wnut_ner"))
    data = load(sample_path("wnut_ner"))  # ner.txt: word<TAB>tag lines
    assert (data.kind, data.labels, data.metric) == ("tokens", shipped.labels, "entity_f1")
    assert data.train == shipped.train and data.dev == shipped.dev
    # the same sentences as JSON lines of word and tag lists, with the dev split in a file of its own
    as_records = [{"tokens": list(e.text), "tags": [shipped.labels[i] for i in e.label]}
                  for e in shipped.train]
    write_jsonl(tmp_path / "train.jsonl", as_records)
    write_jsonl(tmp_path / "dev.jsonl", as_records[:50])
    listed = load(tmp_path / "train.jsonl", dev_file=tmp_path / "dev.jsonl", text_column="tokens",
                  label_column="tags")
    assert listed.kind == "tokens" and listed.train == shipped.train and listed.dev == shipped.train[:50]
    assert listed.files == (tmp_path / "train.jsonl", tmp_path / "dev.jsonl")


def test_conll_2003_layout_reads_first_and_last_columns(tmp_path: Path) -> None:
    path = tmp_path / "train.conll"
    path.write_text("-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\nGerman JJ B-NP B-MISC\n\n"
                    "Peter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\n", encoding="utf-8")
    data = load(path, dev_file=path)
    assert data.labels == ("O", "B-MISC", "B-ORG", "B-PER", "I-PER")
    assert data.train == [Example(("EU", "rejects", "German"), None, (2, 0, 1)),
                          Example(("Peter", "Blackburn"), None, (3, 4))]


# -- the task kind and label set follow from the data ------------------------------------------------


def test_scores_with_fractions_make_a_regression_task_with_pairs(tmp_path: Path) -> None:
    records = [{"a": f"sentence {i}", "b": f"other {i}", "score": i / 4} for i in range(30)]
    data = load(write_jsonl(tmp_path / "sts.jsonl", records), text_column="a", text_pair_column="b",
                label_column="score")
    assert (data.kind, data.labels, data.metric, data.is_pair) == ("regression", (), "spearman", True)
    assert sorted(e.label for e in data.train + data.dev) == [i / 4 for i in range(30)]
    assert all(isinstance(e.label, float) for e in data.train)


def test_integer_labels_are_classes_in_numeric_order(tmp_path: Path) -> None:
    rows = [["text", "label"], *[[f"review {i}", (1, 2, 10)[i % 3]] for i in range(30)]]
    data = load(write_csv(tmp_path / "stars.csv", rows), dev_file=write_csv(tmp_path / "dev.csv", rows))
    assert data.kind == "classification" and data.labels == ("1", "2", "10")
    assert [data.labels[e.label] for e in data.dev[:3]] == ["1", "2", "10"]
    # 1, 1.0 and "1" name one class: JSON numbers and CSV strings agree
    write_jsonl(tmp_path / "dev.jsonl", [{"text": "x", "label": 2.0}, {"text": "y", "label": "10"}])
    mixed = load(tmp_path / "stars.csv", dev_file=tmp_path / "dev.jsonl")
    assert [e.label for e in mixed.dev] == [1, 2]


def test_task_type_overrides_the_guess(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "graded.csv", [["text", "label"], *[[f"t{i}", i % 5] for i in range(40)]])
    assert load(path).kind == "classification"
    assert load(path, task_type="regression").kind == "regression"
    fractions = write_csv(tmp_path / "fractions.csv", [["text", "label"],
                                                       *[[f"t{i}", i % 6 / 2] for i in range(60)]])
    data = load(fractions, task_type="classification")
    assert data.kind == "classification" and data.labels[:3] == ("0", "0.5", "1")


# -- bad input: one line each, naming the file, the record and the fix --------------------------------


def test_missing_train_and_dev_files(tmp_path: Path) -> None:
    assert task_problems(TaskSource(str(tmp_path / "train.csv"))) == [f"train file {tmp_path / 'train.csv'}: "
                                                                      f"no such file"]
    train = write_csv(tmp_path / "t.csv", [["text", "label"], ["a", "x"]])
    fails(r"--dev-file .*dev.jsonl: no such file", train, dev_file=tmp_path / "dev.jsonl")


def test_unreadable_file_type(tmp_path: Path) -> None:
    (tmp_path / "train.xlsx").write_bytes(b"PK")
    fails(r"train.xlsx: cannot read .xlsx; use one of .csv, .tsv, .jsonl", tmp_path / "train.xlsx")


def test_data_dir_and_hub_are_refused_for_a_file(tmp_path: Path) -> None:
    train = write_csv(tmp_path / "t.csv", [["text", "label"], ["a", "x"]])
    fails(r"--data-dir and --hub are for GLUE tasks", train, data_dir=tmp_path)
    fails(r"--data-dir and --hub are for GLUE tasks", train, hub=True)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_missing_column_names_the_columns_that_exist(tmp_path: Path, suffix: str) -> None:
    records = [{"review": "fine film", "stars": 5}, {"review": "dull", "stars": 1}]
    path = tmp_path / f"train{suffix}"
    if suffix == ".csv":
        write_csv(path, [["review", "stars"], ["fine film", 5], ["dull", 1]])
    elif suffix == ".jsonl":
        write_jsonl(path, records)
    else:
        pq.write_table(pa.Table.from_pylist(records), path)
    where = " line 1: " if suffix == ".jsonl" else ": "
    fails(rf"train{suffix}{where}no column 'text' \(the columns are review, stars\); name the right one "
          rf"with --text-column", path)
    fails(r"no column 'label' \(the columns are review, stars\); name the right one with --label-column",
          path, text_column="review")


def test_pair_column_that_does_not_exist(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "nli.csv", [["premise", "label"], ["a", "yes"]])
    fails(r"nli.csv: no column 'hypothesis' \(the columns are premise, label\); name the right one with "
          r"--text-pair-column", path, text_column="premise", text_pair_column="hypothesis")


def test_dev_label_outside_the_train_labels(tmp_path: Path) -> None:
    train = write_csv(tmp_path / "train.csv", [["text", "label"], ["good", "pos"], ["bad", "neg"]])
    dev = write_csv(tmp_path / "dev.csv", [["text", "label"], ["fine", "pos"], ["meh", "neutral"]])
    fails(r"dev.csv line 3: label 'neutral' is not one of the train file's labels \(neg, pos\); fix or "
          r"remove the record", train, dev_file=dev)


def test_empty_splits(tmp_path: Path) -> None:
    header_only = write_csv(tmp_path / "empty.csv", [["text", "label"]])
    fails(r"empty.csv: no examples; the train file needs at least one labelled record", header_only)
    train = write_csv(tmp_path / "train.csv", [["text", "label"], ["good", "pos"], ["bad", "neg"]])
    (tmp_path / "dev.jsonl").write_text("\n")
    fails(r"dev.jsonl: no examples", train, dev_file=tmp_path / "dev.jsonl")
    fails(r"train.csv: a 10% dev split of 2 example\(s\) leaves dev empty; add records or pass --dev-file",
          train)


@pytest.mark.parametrize("score", ["high", "nan", ""])
def test_regression_label_not_a_number(tmp_path: Path, score: str) -> None:
    rows = [["text", "label"], ["a", "0.5"], ["b", score], ["c", "1.5"]]
    fails(rf"scores.csv line 3: label '{score}' is not a finite number; a regression task needs a score",
          write_csv(tmp_path / "scores.csv", rows), task_type="regression")


def test_a_nan_among_fractions_is_caught_not_made_a_class(tmp_path: Path) -> None:
    records = [{"text": "a", "label": 0.5}, {"text": "b", "label": "nan"}, {"text": "c", "label": 2.5}]
    fails(r"line 2: label 'nan' is not a finite number", write_jsonl(tmp_path / "s.jsonl", records))


def test_word_and_tag_counts_differ(tmp_path: Path) -> None:
    records = [{"text": ["Paris", "is", "big"], "label": ["B-loc", "O", "O"]},
               {"text": ["Visit", "Rome"], "label": ["O"]}]
    fails(r"ner.jsonl line 2: 2 words but 1 tags; give one tag per word", write_jsonl(tmp_path / "ner.jsonl",
                                                                                       records))


def test_tags_must_be_bio_names(tmp_path: Path) -> None:
    fails(r"ner.jsonl line 1: the label is a list .*a tokens task needs a list of tag names",
          write_jsonl(tmp_path / "ner.jsonl", [{"text": ["Paris"], "label": [3]}]))
    path = tmp_path / "ner.conll"
    path.write_text("Paris\tLOC\n", encoding="utf-8")
    fails(r"ner.conll line 1: tag 'LOC' is not a BIO tag \(O, B-type or I-type\)", path, dev_file=path)
    path.write_text("Paris\tB-loc\nis\n", encoding="utf-8")
    fails(r"ner.conll line 2: expected a word and its tag separated by a tab, got 'is'", path)


def test_malformed_json_line(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "good", "label": "pos"}\n{"text": "bad", "label": "neg"\n', encoding="utf-8")
    fails(r"train.jsonl line 2: not valid JSON \(Expecting ',' delimiter at column 31\); each line must be "
          r"one JSON object", path)
    path.write_text('["good", "pos"]\n', encoding="utf-8")
    fails(r"train.jsonl line 1: a JSON list, expected an object", path)


def test_ragged_csv_row(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text("text,label\ngood,pos\nfine, but long,pos\n", encoding="utf-8")
    fails(r"train.csv line 3: 3 field\(s\) but the header has 2 \(text, label\); look for a comma inside an "
          r"unquoted text", path)


def test_mixed_list_and_scalar_labels(tmp_path: Path) -> None:
    records = [{"text": ["Paris"], "label": ["B-loc"]}, {"text": "Rome", "label": "loc"}]
    fails(r"mixed.jsonl line 2: the label is not a list of tags though other records' labels are",
          write_jsonl(tmp_path / "mixed.jsonl", records))


def test_not_an_arrow_file(tmp_path: Path) -> None:
    (tmp_path / "train.arrow").write_text("text,label\n")
    fails(r"train.arrow: not a readable Arrow IPC \(file or stream\) file", tmp_path / "train.arrow")


@pytest.mark.parametrize(("name", "options", "needle"), [
    ("ner.conll", {"task_type": "regression"}, "a CoNLL file is a tokens task, not regression"),
    ("ner.csv", {"task_type": "tokens"}, "a tokens task reads CoNLL (.conll, .txt) or word and tag lists"),
    ("ner.conll", {"text_pair_column": "b"}, "a tokens task tags the words of one text"),
])
def test_options_that_do_not_fit_the_file(tmp_path: Path, name: str, options: dict, needle: str) -> None:
    (tmp_path / name).write_text("Paris\tB-loc\n" if name.endswith(".conll") else "text,label\n")
    assert any(needle in p for p in task_problems(TaskSource(str(tmp_path / name), **options)))
