"""Task registry and loaders: the real rotten_tomatoes sample, GLUE files in their real layouts, and
every malformed-input error; plus the scores and the batching the fine-tune stage builds on."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from pretrain_cli.errors import UserError
from pretrain_cli.tasks import Example, hash_subset, known_tasks, load_task
from pretrain_cli.tasks.metrics import scores

# The first lines of each GLUE task's train.tsv, in the real layout (CoLA has no header).
GLUE_FILES = {
    "sst2": ("sentence\tlabel\n"
             "hide new secretions from the parental units \t0\n"
             "contains no wit , only labored gags \t0\n"
             "that loves its characters and communicates something rather beautiful about human "
             "nature \t1\n"),
    "cola": ("gj04\t1\t\tOur friends won't buy this analysis, let alone the next one we propose.\n"
             "gj04\t0\t*\tThey drank the pub.\n"),
    "mrpc": ("\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
             "1\t702876\t702977\tAmrozi accused his brother , whom he called \" the witness \" , of "
             "deliberately distorting his evidence .\tReferring to him as only \" the witness \" , Amrozi "
             "accused his brother of deliberately distorting his evidence .\n"
             "0\t2108705\t2108831\tYucaipa owned Dominick 's before selling the chain to Safeway in 1998 "
             "for $ 2.5 billion .\tYucaipa bought Dominick 's in 1995 for $ 693 million and sold it to "
             "Safeway for $ 1.8 billion in 1998 .\n"),
    "qqp": ("id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n"
            "133273\t213221\t213222\tHow is the life of a math student? Could you describe your own "
            "experiences?\tWhich level of prepration is enough for the exam jlpt5?\t0\n"
            "402555\t536040\t536041\tHow do I control my horny emotions?\tHow do you control your "
            "horniness?\t1\n"),
    "qnli": ("index\tquestion\tsentence\tlabel\n"
             "0\tWhen did the third Digimon series begin?\tUnlike the two seasons before it and most of "
             "the seasons that followed, Digimon Tamers takes a darker and more realistic "
             "approach.\tnot_entailment\n"
             "1\tWhich missile batteries often have individual launchers several kilometres from one "
             "another?\tWhen MANPADS is operated by specialists, batteries may have several dozen teams "
             "deploying separately in small sections.\tentailment\n"),
    "rte": ("index\tsentence1\tsentence2\tlabel\n"
            "0\tNo Weapons of Mass Destruction Found in Iraq Yet.\tWeapons of Mass Destruction Found in "
            "Iraq.\tnot_entailment\n"
            "1\tA place of sorrow, after Pope John Paul II died, became a place of celebration.\tPope John "
            "Paul II died.\tentailment\n"),
    "wnli": ("index\tsentence1\tsentence2\tlabel\n"
             "0\tI stuck a pin through a carrot. When I pulled the pin out, it had a hole.\tThe carrot had "
             "a hole.\t1\n"
             "1\tJohn couldn't see the stage with Billy in front of him because he is so short.\tJohn is so "
             "short.\t1\n"
             "2\tThe police arrested all of the gang members.\tThe police were trying to stop the "
             "gang.\t0\n"),
    "mnli": ("index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
             "sentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label\n"
             "0\t31193\t31193n\tgovernment\t( ( Conceptually cream ) skimming )\t( ( Product and ) "
             "geography )\t(ROOT)\t(ROOT)\tConceptually cream skimming has two basic dimensions - product "
             "and geography.\tProduct and geography are what make cream skimming work. \tneutral\tneutral\n"
             "1\t101457\t101457e\ttelephone\t( you ( know ) )\t( ( You lose ) )\t(ROOT)\t(ROOT)\tyou know "
             "during the season and i guess at at your level uh you lose them\tYou lose the things to the "
             "following level if the people recall.\tentailment\tentailment\n"),
}


def write_glue(directory: Path, task: str, dev: str | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    dev_file = "dev_matched.tsv" if task == "mnli" else "dev.tsv"
    (directory / "train.tsv").write_text(GLUE_FILES[task], encoding="utf-8")
    (directory / dev_file).write_text(GLUE_FILES[task] if dev is None else dev, encoding="utf-8")
    return directory


def test_rotten_tomatoes_is_the_real_sample_split_by_hash() -> None:
    data = load_task("rotten_tomatoes")
    assert data.labels == ("negative", "positive")
    assert len(data.train) + len(data.dev) == 8530
    assert Counter(e.label for e in data.dev) == {0: 426, 1: 426}
    assert Counter(e.label for e in data.train) == {0: 3839, 1: 3839}
    assert not {e.text for e in data.train} & {e.text for e in data.dev}
    assert all(e.text_pair is None for e in data.dev)
    assert load_task("rotten_tomatoes").dev == data.dev  # the split never changes


def test_hash_subset_is_fixed_and_mixes_labels() -> None:
    train = load_task("rotten_tomatoes").train
    subset = hash_subset(train, 200)
    assert subset == hash_subset(train, 200) and len(subset) == 200
    assert set(subset) <= set(train)
    assert 60 < sum(e.label for e in subset) < 140  # the file is sorted by label; a prefix would not mix
    assert hash_subset(train, 0) is train


@pytest.mark.parametrize("task", sorted(GLUE_FILES))
def test_glue_layouts(tmp_path: Path, task: str) -> None:
    data = load_task(task, write_glue(tmp_path / task, task))
    assert len(data.train) == len(data.dev) == GLUE_FILES[task].count("\n") - (task != "cola")
    assert data.is_pair == (task not in ("sst2", "cola"))
    assert all(0 <= e.label < len(data.labels) for e in data.train)


def test_glue_columns_and_labels_map_by_name(tmp_path: Path) -> None:
    mrpc = load_task("mrpc", write_glue(tmp_path / "mrpc", "mrpc"))
    first = mrpc.train[0]
    assert first.text.startswith("Amrozi accused") and '" the witness "' in first.text  # bare quotes kept
    assert mrpc.labels[first.label] == "equivalent"
    qnli = load_task("qnli", write_glue(tmp_path / "qnli", "qnli"))
    assert [qnli.labels[e.label] for e in qnli.train] == ["not_entailment", "entailment"]
    mnli = load_task("mnli", write_glue(tmp_path / "mnli", "mnli"))
    assert [mnli.labels[e.label] for e in mnli.train] == ["neutral", "entailment"]
    assert mnli.train[1].text_pair == "You lose the things to the following level if the people recall."
    cola = load_task("cola", write_glue(tmp_path / "cola", "cola"))
    assert cola.train[1] == Example("They drank the pub.", None, 0)


def test_unknown_task_lists_known_ones() -> None:
    with pytest.raises(UserError, match="unknown task 'sst3'; known tasks: cola, mnli") as error:
        load_task("sst3")
    assert all(task in str(error.value) for task in known_tasks())


def test_glue_without_data_dir_says_where_files_go() -> None:
    with pytest.raises(UserError) as error:
        load_task("sst2")
    message = str(error.value)
    for needle in ("train.tsv", "dev.tsv", "sentence, label", "--data-dir", "rotten_tomatoes"):
        assert needle in message


def test_data_dir_for_the_offline_task_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="reads no --data-dir"):
        load_task("rotten_tomatoes", tmp_path)


def test_bad_label_names_file_line_and_label(tmp_path: Path) -> None:
    directory = write_glue(tmp_path, "rte")
    (directory / "dev.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n"
                                       "1\tc\td\tcontradiction\n")
    with pytest.raises(UserError, match=r"dev.tsv line 3: label 'contradiction' is not a rte label "
                                        r"\(expected one of entailment, not_entailment\)"):
        load_task("rte", directory)


@pytest.mark.parametrize(("content", "message"), [
    ("sentence\tscore\nfine film\t1\n", r"train.tsv: no column 'label' in the header \(sentence, score\)"),
    ("", r"train.tsv: no column 'sentence', 'label' in the header \(empty file\)"),
    ("sentence\tlabel\nfine film\t1\nno label here\n",
     r"train.tsv line 3: 1 tab-separated field\(s\), expected 2"),
    ("sentence\tlabel\n\n", r"train.tsv: no examples"),
])
def test_malformed_tsv(tmp_path: Path, content: str, message: str) -> None:
    directory = write_glue(tmp_path, "sst2")
    (directory / "train.tsv").write_text(content)
    with pytest.raises(UserError, match=message):
        load_task("sst2", directory)


def test_missing_dev_file(tmp_path: Path) -> None:
    directory = write_glue(tmp_path, "mnli")
    (directory / "dev_matched.tsv").unlink()
    with pytest.raises(UserError, match="dev_matched.tsv: no such file; task mnli reads train.tsv and "
                                        "dev_matched"):
        load_task("mnli", directory)


def test_scores_macro_f1_counts_a_never_predicted_label() -> None:
    assert scores([0, 1, 1, 0], [0, 1, 1, 0], 2) == {"accuracy": 1.0, "macro_f1": 1.0}
    collapsed = scores([0, 0, 0, 1], [0, 0, 0, 0], 2)
    assert collapsed["accuracy"] == 0.75
    assert collapsed["macro_f1"] == pytest.approx((6 / 7 + 0) / 2)


def test_batches_cover_every_example_once_and_group_lengths() -> None:
    from pretrain_cli.tasks.encode import eval_batches, train_batches

    rng = random.Random(0)
    lengths = [rng.randint(5, 64) for _ in range(5000)]
    batches = train_batches(lengths, 32, random.Random(1))
    assert sorted(i for b in batches for i in b) == list(range(5000))
    assert batches == train_batches(lengths, 32, random.Random(1))
    assert batches != train_batches(lengths, 32, random.Random(2))
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    shuffled = list(range(5000))
    random.Random(1).shuffle(shuffled)
    padded_at_random = sum(32 * max(lengths[i] for i in shuffled[s:s + 32]) for s in range(0, 5000, 32))
    assert padded < 0.7 * padded_at_random
    ordered = eval_batches(lengths, 100)
    assert [lengths[i] for b in ordered for i in b] == sorted(lengths)


def test_collate_pads_and_marks_the_second_segment() -> None:
    from pretrain_cli.tasks.encode import Encoded, collate

    encoded = Encoded(input_ids=[[2, 7, 3, 8, 3], [2, 9, 3]], token_type_ids=[[0, 0, 0, 1, 1], [0, 0, 0]],
                      labels=[1, 0])
    batch = collate(encoded, [1, 0], pad_id=0)
    assert batch["input_ids"].tolist() == [[2, 9, 3, 0, 0], [2, 7, 3, 8, 3]]
    assert batch["token_type_ids"].tolist() == [[0, 0, 0, 0, 0], [0, 0, 0, 1, 1]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert batch["labels"].tolist() == [0, 1]
