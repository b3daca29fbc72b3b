"""Plain-text, JSONL and JSON readers: stable order, ids, and one clear error per bad input."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from pretrain_cli.errors import UserError
from pretrain_cli.samples import sample_path
from pretrain_cli.stages.corpus.readers import (
    RawDocument,
    iter_json_documents,
    iter_jsonl_documents,
    iter_text_documents,
)


def test_text_directory_is_walked_recursively_in_sorted_order(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "z.txt").write_text("Zed.\r\n\r\nSecond paragraph.", encoding="utf-8")
    (tmp_path / "a.txt").write_bytes("\ufeffAy.".encode())
    (tmp_path / "c.md").write_text("not text input", encoding="utf-8")
    docs = list(iter_text_documents(tmp_path))
    assert docs == [
        RawDocument(doc_id="a.txt", title="a", text="Ay.", source=str(tmp_path / "a.txt")),
        RawDocument(doc_id="b/z.txt", title="z", text="Zed.\n\nSecond paragraph.",
                    source=str(tmp_path / "b" / "z.txt")),
    ]
    assert list(iter_text_documents(tmp_path / "a.txt")) == docs[:1]


def test_undecodable_text_names_the_byte_and_the_way_out(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes("café crème".encode("latin-1"))
    with pytest.raises(UserError, match=r"latin1\.txt: not valid UTF-8 at byte 3 .*encoding-errors replace"):
        list(iter_text_documents(path))
    assert next(iter_text_documents(path, encoding_errors="replace")).text == "caf\ufffd cr\ufffdme"
    with pytest.raises(UserError, match="unknown --encoding-errors 'lenient'"):
        list(iter_text_documents(path, encoding_errors="lenient"))


def test_missing_or_empty_inputs(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such file or directory"):
        list(iter_text_documents(tmp_path / "absent"))
    with pytest.raises(UserError, match=r"no \*\.txt files"):
        list(iter_text_documents(tmp_path))


def test_jsonl_records_ids_and_titles(tmp_path: Path) -> None:
    rows = [{"text": "One.", "title": "First", "url": "u1"}, {"text": "Two.", "url": 2}]
    path = tmp_path / "docs.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n\n", encoding="utf-8")
    assert list(iter_jsonl_documents(path)) == [
        RawDocument(doc_id="docs.jsonl:1", title="First", text="One.", source=str(path)),
        RawDocument(doc_id="docs.jsonl:2", title="", text="Two.", source=str(path)),
    ]
    assert [d.doc_id for d in iter_jsonl_documents(path, id_field="url")] == ["u1", "2"]
    packed = tmp_path / "more" / "docs.jsonl.gz"
    packed.parent.mkdir()
    packed.write_bytes(gzip.compress(path.read_bytes()))
    assert [d.doc_id for d in iter_jsonl_documents(tmp_path)] == [
        "docs.jsonl:1", "docs.jsonl:2", "more/docs.jsonl.gz:1", "more/docs.jsonl.gz:2"]


@pytest.mark.parametrize(("line", "message"), [
    ('{"text": "ok"', r"line 2: not valid JSON \(Expecting ',' delimiter at column 14\)"),
    ('["text"]', "line 2: expected a JSON object, found list"),
    ('{"body": "x"}', r"line 2: text field 'text' is missing \(keys: body\).*--text-field"),
    ('{"text": 5}', r"line 2: text field 'text' is not a string \(found int\)"),
])
def test_bad_jsonl_lines(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "fine"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(UserError, match=rf"bad\.jsonl, {message}"):
        list(iter_jsonl_documents(path))


def test_bad_jsonl_id_and_encoding(tmp_path: Path) -> None:
    path = tmp_path / "ids.jsonl"
    path.write_text('{"text": "a", "id": null}\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"line 1: field 'id' is missing or not a string/integer"):
        list(iter_jsonl_documents(path, id_field="id"))
    path.write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(UserError, match=r"not valid UTF-8 at byte 13 of line 2"):
        list(iter_jsonl_documents(path))
    packed = tmp_path / "cut.jsonl.gz"
    whole = gzip.compress("".join(f'{{"text": "line {i}"}}\n' for i in range(1000)).encode())
    packed.write_bytes(whole[:len(whole) // 2])
    with pytest.raises(UserError, match=r"cut\.jsonl\.gz: compressed data is truncated or corrupt"):
        list(iter_jsonl_documents(packed))


def test_json_summaries_from_the_real_sample() -> None:
    path = sample_path("wiki_summaries")
    docs = list(iter_json_documents(path))
    assert len(docs) == 10_033
    first = docs[0]
    assert (first.doc_id, first.title, first.source) == ("20th-century classical music",
                                                         "20th-century classical music", str(path))
    assert first.text.startswith("20th-century classical music is Western art music that was written")


def test_json_title_to_text_and_bad_shapes(tmp_path: Path) -> None:
    path = tmp_path / "plain.json"
    path.write_text(json.dumps({"Paris": "Capital of France.", "Rome": {"extract": "Capital of Italy."}}),
                    encoding="utf-8")
    assert [(d.title, d.text) for d in iter_json_documents(path)] == [
        ("Paris", "Capital of France."), ("Rome", "Capital of Italy.")]
    path.write_text(json.dumps({"Oslo": {"summary": "x"}}), encoding="utf-8")
    with pytest.raises(UserError, match=r"entry 'Oslo': text field 'extract' is missing \(keys: summary\)"):
        list(iter_json_documents(path))
    path.write_text(json.dumps({"Oslo": 3}), encoding="utf-8")
    with pytest.raises(UserError, match="entry 'Oslo': expected a string or an object"):
        list(iter_json_documents(path))
    path.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(UserError, match="expected a JSON object mapping title to text, found list"):
        list(iter_json_documents(path))
    path.write_text("{oops", encoding="utf-8")
    with pytest.raises(UserError, match=r"plain\.json: not valid JSON .* line 1, column 2"):
        list(iter_json_documents(path))
