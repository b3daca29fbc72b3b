"""The corpus stage as a library: deterministic shards and resume after an interruption."""

from __future__ import annotations

from pathlib import Path

import pytest

from pretrain_cli.stages.corpus.build import CorpusConfig, run
from pretrain_cli.store import StageOutput


def config(out: Path) -> CorpusConfig:
    return CorpusConfig(inputs=[Path("sample:enwiki"), Path("sample:wiki_summaries")], out=out,
                        docs_per_shard=150, limit=700)


def test_interrupted_build_resumes_to_identical_shards(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    whole = run(config(tmp_path / "whole"))
    assert len(whole.shards) == 5

    original = StageOutput.write_shard
    written: list[str] = []

    def crash_on_third(self: StageOutput, name: str, *args, **kwargs):
        if len(written) == 2:
            raise KeyboardInterrupt  # what Ctrl-C or a kill between shards looks like
        written.append(name)
        return original(self, name, *args, **kwargs)

    monkeypatch.setattr(StageOutput, "write_shard", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        run(config(tmp_path / "resumed"))
    assert not (tmp_path / "resumed" / "manifest.json").exists()
    monkeypatch.setattr(StageOutput, "write_shard", original)

    resumed = run(config(tmp_path / "resumed"))
    assert [s.sha256 for s in resumed.shards] == [s.sha256 for s in whole.shards]
    assert resumed.stats == whole.stats


def test_sources_and_sentences(tmp_path: Path) -> None:
    manifest = run(config(tmp_path / "docs"))
    assert manifest.stats["documents"] == 700
    assert manifest.stats["sentences"] > 3 * manifest.stats["documents"]


def test_text_paragraphs_join_wrapped_lines() -> None:
    from pretrain_cli.stages.corpus.build import paragraphs_of

    wrapped = "The first line of a\nwrapped paragraph.\n\n  Second paragraph\nhere.\n"
    assert paragraphs_of(wrapped, "text") == ["The first line of a wrapped paragraph.",
                                              "Second paragraph here."]
    assert paragraphs_of("One.\nTwo.", "jsonl") == ["One.", "Two."]
