"""`ptk corpus build` through the CLI: real dumps in, shards and manifest out; bad input → exit 2."""

from __future__ import annotations

import bz2
import json
from pathlib import Path

import datasets
import pytest
from conftest import assert_clean_failure
from typer.testing import CliRunner

from pretrain_cli.cli.app import app
from pretrain_cli.samples import sample_path
from pretrain_cli.store import read_manifest

runner = CliRunner()


def build(*args: str):
    return runner.invoke(app, ["corpus", "build", *args])


def test_enwiki_dump_builds_documents(tmp_path: Path) -> None:
    out = tmp_path / "docs"
    result = build("sample:enwiki", "--out", str(out), "--docs-per-shard", "40")
    assert result.exit_code == 0, result.output
    manifest = read_manifest(out, "corpus")
    dropped = manifest.stats["dropped"]
    assert dropped["redirect"] == 100
    assert manifest.stats["documents"] + sum(dropped.values()) - dropped["redirect"] == 106
    assert manifest.stats["documents"] > 90
    assert len(manifest.shards) == -(-manifest.stats["documents"] // 40)
    ds = datasets.Dataset.from_file(str(out / manifest.shards[0].file))
    row = ds[0]
    assert row["title"] and row["sentences"] and "[[" not in row["text"] and "{{" not in row["text"]
    again = build("sample:enwiki", "--out", str(out), "--docs-per-shard", "40")
    assert again.exit_code == 0 and "up to date" in again.output


def test_text_jsonl_and_json_inputs(tmp_path: Path) -> None:
    (tmp_path / "txt").mkdir()
    sentence = "The quick brown fox jumps over the lazy dog near the river bank. "
    (tmp_path / "txt" / "a.txt").write_text(sentence * 5)
    (tmp_path / "docs.jsonl").write_text(json.dumps({"body": (sentence * 4).strip()}) + "\n")
    out = tmp_path / "out"
    result = build(str(tmp_path / "txt"), str(tmp_path / "docs.jsonl"), "--text-field", "body",
                   "--out", str(out), "--no-dedup")
    assert result.exit_code == 0, result.output
    assert read_manifest(out, "corpus").stats["documents"] == 2
    summaries = build("sample:wiki_summaries", "--out", str(tmp_path / "s"), "--limit", "50")
    assert summaries.exit_code == 0, summaries.output
    assert read_manifest(tmp_path / "s", "corpus").stats["documents"] == 50


def test_missing_input(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert_clean_failure(build(str(tmp_path / "nope.xml.bz2"), "--out", str(out)), out, "nope.xml.bz2")


def test_truncated_bz2_keeps_finished_shards(tmp_path: Path) -> None:
    data = sample_path("enwiki").read_bytes()
    broken = tmp_path / "broken.xml.bz2"
    broken.write_bytes(data[: len(data) * 3 // 4])
    out = tmp_path / "out"
    result = build(str(broken), "--out", str(out), "--docs-per-shard", "10")
    assert_clean_failure(result, out, "broken.xml.bz2")
    assert list(out.glob("train-*.arrow")), "shards finished before the damage are kept"


def test_malformed_xml(tmp_path: Path) -> None:
    bad = tmp_path / "bad.xml"
    bad.write_text("<mediawiki><page><title>A</title><ns>0</ns><text>hello</page></mediawiki>")
    out = tmp_path / "out"
    assert_clean_failure(build(str(bad), "--out", str(out)), out, "bad.xml")


@pytest.mark.parametrize("suffix", [".xml", ".xml.bz2"])
def test_entity_declarations_refused(tmp_path: Path, suffix: str) -> None:
    laughs = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
              '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
              "<mediawiki><page><title>A</title><ns>0</ns><revision><text>&lol2;</text>"
              "</revision></page></mediawiki>")
    path = tmp_path / f"lolz{suffix}"
    path.write_bytes(bz2.compress(laughs.encode()) if suffix.endswith("bz2") else laughs.encode())
    out = tmp_path / "out"
    assert_clean_failure(build(str(path), "--out", str(out)), out, path.name)


def test_empty_corpus(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "short.txt").write_text("Too short.")
    out = tmp_path / "out"
    assert_clean_failure(build(str(tmp_path / "empty"), "--out", str(out)), out, "no documents")
