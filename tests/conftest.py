"""Hermetic tests: no hub, no user cache; every artefact lives in tmp_path."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# Fixture builders shared by the unit and cli tiers live beside the unit tests.
sys.path.insert(0, str(Path(__file__).parent / "unit"))

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point every cache a library might use at a throwaway directory."""
    cache = tmp_path_factory.getbasetemp() / "cache"
    monkeypatch.setenv("HF_HOME", str(cache / "hf"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.setenv("MPLCONFIGDIR", str(cache / "mpl"))


def build_corpus(out, n_docs: int, per_shard: int):
    """A real `ptk corpus build` of the first `n_docs` Wikipedia lead sections (0: an empty corpus,
    an edge case the corpus stage itself refuses to write, made here through the store)."""
    from pathlib import Path

    from pretrain_cli.stages.corpus.build import SCHEMA, CorpusConfig, run
    from pretrain_cli.store import StageOutput

    cfg = CorpusConfig(inputs=[Path("sample:wiki_summaries")], out=out, limit=n_docs,
                       docs_per_shard=per_shard)
    if n_docs:
        return run(cfg)
    output = StageOutput(cfg, out)
    output.up_to_date()
    output.write_shard("train-00000.arrow", SCHEMA.empty_table())
    return output.finish(stats={"documents": 0})


@pytest.fixture
def one_thread():
    """Tiny models gain nothing from a second thread and lose a lot to it on a busy machine; a module
    opts in with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def make_corpus():
    """`make_corpus(out, n_docs, per_shard)`: see `build_corpus`."""
    return build_corpus


def assert_clean_failure(result, out, *needles: str) -> None:
    """The bad-input contract: exit code 2, one `error:` line naming what is wrong, and no
    manifest.json in `out` (nothing marked complete)."""
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not (out / "manifest.json").exists()


def build_tiny_bert(directory, *, vocab_size: int = 800, model_vocab: int | None = None):
    """A random 2-layer BertForPreTraining and a WordPiece tokenizer trained on real review text,
    saved in `directory`; `model_vocab` smaller than the tokenizer makes a mismatched pair."""
    import torch
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertConfig, BertForPreTraining, BertTokenizerFast

    from pretrain_cli.tasks import TaskSource, load_task

    trainer = BertWordPieceTokenizer(lowercase=True)
    trainer.train_from_iterator([e.text for e in load_task(TaskSource(task="rotten_tomatoes")).train[:3000]],
                                vocab_size=vocab_size, show_progress=False)
    tokenizer = BertTokenizerFast(vocab=trainer.get_vocab())
    torch.manual_seed(0)
    config = BertConfig(vocab_size=model_vocab or len(tokenizer), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    BertForPreTraining(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real `corpus → tokenize → mask` pair examples (pretrain_fixtures), built once per session."""
    from pretrain_fixtures import shared_examples

    return shared_examples(tmp_path_factory)


@pytest.fixture(scope="module")
def train_set(examples: Path):
    """The train split of `examples`, as the pretraining loader reads it."""
    from pretrain_cli.store import read_manifest
    from pretrain_cli.training.data import PairExamples

    manifest = read_manifest(examples, "mask")
    return PairExamples.from_manifest(manifest, "train", manifest.extra["vocab_size"])
