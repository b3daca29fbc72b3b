"""Corpus input readers and format detection: stable order, ids, flat memory, one clear error per
bad input. Fixtures are real text (Wikipedia lead sections, WikiExtractor's output on the enwiki
sample) written into tmp_path in each format's exact on-disk shape."""

from __future__ import annotations

import bz2
import gzip
import json
import re
import typing
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pretrain_cli.errors import UserError
from pretrain_cli.samples import sample_path
from pretrain_cli.stages.corpus.build import Format
from pretrain_cli.stages.corpus.inputs import InputOptions, Record, iter_records
from pretrain_cli.stages.corpus.readers import (
    FORMATS,
    RawDocument,
    detect_format,
    iter_json_documents,
    iter_jsonl_documents,
    iter_parquet_documents,
    iter_saved_dataset_documents,
    iter_tagged_documents,
    iter_text_documents,
    iter_wikiextractor_documents,
    untag,
)

# Two articles exactly as `wikiextractor -o OUT enwiki-…-shortened.bz2` (3.1.0) writes them.
WIKIEXTRACTOR_DOCS = """\
<doc id="696" url="https://en.wikipedia.org/wiki?curid=696" title="Aa River">
Aa River

Aa is the name of a large number of small European rivers. Aa originated from an Indo-European \
word meaning water, and it can be seen in the German "Ach" or "Aach" or the North Germanic "A" or "Aa".

</doc>
<doc id="742" url="https://en.wikipedia.org/wiki?curid=742" title="Algorithms (journal)">
Algorithms (journal)

Algorithms is a peer-reviewed open access mathematics journal concerning design, analysis, and \
experiments on algorithms. The journal is published by MDPI and was established in 2008. Its \
editor-in-chief is Kazuo Iwama (Kyoto University).
Abstracting and indexing.
The journal is abstracted and indexed in Chemical Abstracts Service, Compendex, DBLP Computer \
Science Bibliography, Inspec, MathSciNet, Scopus, and Zentralblatt MATH.

</doc>
"""
# The same article as `wikiextractor --json` writes it.
WIKIEXTRACTOR_JSON = json.dumps({
    "id": "742", "revid": "696657918", "url": "https://en.wikipedia.org/wiki?curid=742",
    "title": "Algorithms (journal)",
    "text": "Algorithms is a peer-reviewed open access mathematics journal concerning design, analysis, "
            "and experiments on algorithms. The journal is published by MDPI and was established in 2008. "
            "Its editor-in-chief is Kazuo Iwama (Kyoto University).\nAbstracting and indexing.\nThe journal "
            "is abstracted and indexed in Chemical Abstracts Service, Compendex, DBLP Computer Science "
            "Bibliography, Inspec, MathSciNet, Scopus, and Zentralblatt MATH."}) + "\n"
# WikiExtractor's output for a page titled `AT&T "Bell" <System>` and an empty page: it copies the
# XML-escaped title verbatim and HTML-escapes the text, in both output forms.
ESCAPED_DOCS = """\
<doc id="7" url="https://en.wikipedia.org/wiki?curid=7" title="AT&amp;T &quot;Bell&quot; &lt;System&gt;">
AT&amp;T &quot;Bell&quot; &lt;System&gt;

AT&amp;T is a company &amp; more. It uses and x &lt; y.
History.

</doc>
<doc id="8" url="https://en.wikipedia.org/wiki?curid=8" title="Empty">
Empty



</doc>
"""
ESCAPED_JSON = (
    '{"id": "7", "revid": "100", "url": "https://en.wikipedia.org/wiki?curid=7", "title": '
    '"AT&amp;T &quot;Bell&quot; &lt;System&gt;", "text": "AT&amp;T is a company &amp; more. It uses and '
    'x &lt; y.\\nHistory."}\n'
    '{"id": "8", "revid": "101", "url": "https://en.wikipedia.org/wiki?curid=8", "title": "Empty", '
    '"text": ""}\n')


@pytest.fixture(scope="module")
def summaries() -> list[tuple[str, str]]:
    """(title, text) of the first 300 real Wikipedia lead sections."""
    data = json.loads(sample_path("wiki_summaries").read_bytes())
    return [(title, entry["extract"]) for title, entry in list(data.items())[:300]]


# Plain text --------------------------------------------------------------------------------------

def test_text_directory_is_walked_recursively_in_sorted_order(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "z.txt").write_text("Zed.\r\n\r\nSecond paragraph.", encoding="utf-8")
    (tmp_path / "a.txt").write_bytes("\ufeffAy.".encode())
    (tmp_path / "b" / "y.txt.gz").write_bytes(gzip.compress(b"Packed."))
    (tmp_path / "c.txt.bz2").write_bytes(bz2.compress(b"Also packed."))
    (tmp_path / "c.md").write_text("not text input", encoding="utf-8")
    docs = list(iter_text_documents(tmp_path))
    assert docs == [
        RawDocument(doc_id="a.txt", title="a", text="Ay.", source=str(tmp_path / "a.txt")),
        RawDocument(doc_id="b/y.txt.gz", title="y", text="Packed.", source=str(tmp_path / "b" / "y.txt.gz")),
        RawDocument(doc_id="b/z.txt", title="z", text="Zed.\n\nSecond paragraph.",
                    source=str(tmp_path / "b" / "z.txt")),
        RawDocument(doc_id="c.txt.bz2", title="c", text="Also packed.", source=str(tmp_path / "c.txt.bz2")),
    ]
    assert list(iter_text_documents(tmp_path / "a.txt")) == docs[:1]


def test_blank_line_split_reads_bert_pretraining_input(tmp_path: Path,
                                                       summaries: list[tuple[str, str]]) -> None:
    # BERT's create_pretraining_data.py input: one sentence per line, a blank line between documents.
    articles = [[s if s.endswith(".") else s + "." for s in text.split(". ")] for _, text in summaries[:3]]
    lines = ["", *articles[0], "", "  ", "", *articles[1], "\t", *articles[2]]  # no final blank line
    path = tmp_path / "bert.txt"
    path.write_bytes(("\ufeff" + "\r\n".join(lines)).encode())
    docs = list(iter_text_documents(path, split="blank-line"))
    first_lines = [2, 2 + len(articles[0]) + 3, 2 + len(articles[0]) + 3 + len(articles[1]) + 1]
    assert [d.doc_id for d in docs] == [f"bert.txt:{n}" for n in first_lines]
    assert [d.text for d in docs] == ["\n".join(article) for article in articles]
    assert {(d.title, d.source) for d in docs} == {("", str(path))}
    packed = tmp_path / "packed" / "bert.txt.gz"
    packed.parent.mkdir()
    packed.write_bytes(gzip.compress(path.read_bytes()))
    assert [d.text for d in iter_text_documents(packed.parent, split="blank-line")] == [d.text for d in docs]
    with pytest.raises(UserError, match="unknown --text-split 'paragraph'; use file or blank-line"):
        list(iter_text_documents(path, split="paragraph"))  # type: ignore[arg-type]


def test_undecodable_text_names_the_byte_and_the_way_out(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes("café crème".encode("latin-1"))
    with pytest.raises(UserError, match=r"latin1\.txt: not valid UTF-8 at byte 3 .*encoding-errors replace"):
        list(iter_text_documents(path))
    assert next(iter_text_documents(path, encoding_errors="replace")).text == "caf\ufffd cr\ufffdme"
    with pytest.raises(UserError, match="unknown --encoding-errors 'lenient'"):
        list(iter_text_documents(path, encoding_errors="lenient"))
    # Line by line, the offset still counts from the start of the file, and the line is named.
    path.write_bytes(b"Fine line.\n\nTwo caf\xe9s.\n")
    with pytest.raises(UserError, match=r"latin1\.txt, line 3: not valid UTF-8 at byte 19 "):
        list(iter_text_documents(path, split="blank-line"))
    assert [d.text for d in iter_text_documents(path, encoding_errors="replace", split="blank-line")] == [
        "Fine line.", "Two caf\ufffds."]
    packed = tmp_path / "latin1.txt.gz"
    packed.write_bytes(gzip.compress(path.read_bytes()))
    with pytest.raises(UserError, match=r"not valid UTF-8 at byte 19 of the decompressed data"):
        list(iter_text_documents(packed))


def test_missing_empty_and_damaged_text_inputs(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such file or directory"):
        list(iter_text_documents(tmp_path / "absent"))
    with pytest.raises(UserError, match=r"no \*\.txt or \*\.txt\.gz or \*\.txt\.bz2 files"):
        list(iter_text_documents(tmp_path))
    packed = tmp_path / "cut.txt.bz2"
    whole = bz2.compress(b"".join(b"line %d\n" % i for i in range(5000)))
    packed.write_bytes(whole[:len(whole) // 2])
    with pytest.raises(UserError, match=r"cut\.txt\.bz2: compressed data is truncated or corrupt"):
        list(iter_text_documents(packed))


# Tagged text -------------------------------------------------------------------------------------

PEOPLES_DAILY_TEXT = [
    "迈向充满希望的新世纪——一九九八年新年讲话（附图片１张）",
    "中共中央总书记、国家主席江泽民",
    "（一九九七年十二月三十一日）",
    "１２月３１日，中共中央总书记、国家主席江泽民发表１９９８年新年讲话"
    "《迈向充满希望的新世纪》。（新华社记者兰红光摄）",
]


@pytest.fixture(scope="module")
def peoples_daily() -> list[str]:
    """The first four lines of sample:zh_news (People's Daily, January 1998), word/POS-tagged:
    `迈向/v  充满/v  希望/n  的/u …`; PEOPLES_DAILY_TEXT is what they say."""
    with sample_path("zh_news").open(encoding="utf-8") as lines:
        return [next(lines).rstrip("\n") for _ in range(4)]


def test_tagged_sample_reads_one_untagged_document_per_line() -> None:
    path = sample_path("zh_news")
    docs = list(iter_tagged_documents(path))
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [d.text for d in docs[:4]] == PEOPLES_DAILY_TEXT
    assert [d.doc_id for d in docs] == [f"199801.txt:{n}" for n in range(1, len(lines) + 1)]
    assert {(d.title, d.source) for d in docs} == {("", str(path))}
    # The sample writes Latin letters and digits full-width, so no word boundary gets a space, and
    # the text is exactly the words: every tag gone, every character of every word kept.
    for doc, line in zip(docs, lines, strict=True):
        words = [token.rsplit("/", 1)[0] for token in line.split()]
        assert doc.text == "".join(words)
    assert not any(re.search(r"/[A-Za-z]", d.text) for d in docs)
    assert "１／３" in "".join(d.text for d in docs)  # "１／３/m": the tag goes, the fraction stays


@pytest.mark.parametrize(("line", "text"), [
    ("1/2/m  的/u", "1/2的"),                                     # the tag follows the last slash
    ("Windows/nx  98/m  操作/vn  系统/n", "Windows 98操作系统"),  # a space between Latin/digit words
    ("据/p  CNN/nx  报道/v  ，/w  3/m  ./w  5/m", "据CNN报道，3.5"),
    ("Ｉｎｔｅｒｎｅｔ/nx  ＷＷＷ/nx  网络/n", "ＩｎｔｅｒｎｅｔＷＷＷ网络"),  # full-width: unspaced
    ("Москва/ns  2008/m", "Москва 2008"),
    ("北京  欢迎/v  you/r", "北京欢迎you"),                       # a token without a tag stays whole
    ("50/50  平分/v", "50/50平分"),                               # digits after the slash: no tag
    ("//w  ", "/"),                                               # the slash as a word
    ("\u3000", ""),
])
def test_untag(line: str, text: str) -> None:
    assert untag(line) == text


def test_tagged_files_split_by_line_or_by_blank_line_blocks(tmp_path: Path, peoples_daily: list[str]) -> None:
    lines = peoples_daily
    # No blank line between two lines of text: one document per line, leading and trailing blank
    # lines skipped.
    flat = tmp_path / "flat" / "199801.txt"
    flat.parent.mkdir()
    flat.write_text("\n" + "\r\n".join(lines) + "\n\n\n", encoding="utf-8")
    assert [(d.doc_id, d.text) for d in iter_tagged_documents(flat)] == [
        (f"199801.txt:{n}", text) for n, text in enumerate(PEOPLES_DAILY_TEXT, start=2)]
    # Articles separated by blank lines: one document per block, its lines its paragraphs.
    blocks = tmp_path / "blocks.txt.gz"
    blocks.write_bytes(gzip.compress("\n".join([*lines[:2], "", "\u3000", *lines[2:]]).encode()))
    assert [(d.doc_id, d.text) for d in iter_tagged_documents(blocks)] == [
        ("blocks.txt.gz:1", "\n".join(PEOPLES_DAILY_TEXT[:2])),
        ("blocks.txt.gz:5", "\n".join(PEOPLES_DAILY_TEXT[2:]))]
    # A directory: every *.txt[.gz|.bz2] below it, in sorted order, ids relative to it.
    blocks.rename(tmp_path / "flat" / "a.txt.gz")
    assert [d.doc_id for d in iter_tagged_documents(tmp_path)] == [
        "flat/199801.txt:2", "flat/199801.txt:3", "flat/199801.txt:4", "flat/199801.txt:5",
        "flat/a.txt.gz:1", "flat/a.txt.gz:5"]


def test_undecodable_tagged_text_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "gbk.txt"
    path.write_bytes("希望/n\n".encode() + "充满/v".encode("gbk") + b"\n")
    with pytest.raises(UserError, match=r"gbk\.txt, line 2: not valid UTF-8 at byte 9 .*encoding-errors"):
        list(iter_tagged_documents(path))
    assert [d.text for d in iter_tagged_documents(path, encoding_errors="replace")] == [
        "希望", "\ufffd\ufffd\ufffd\ufffd"]
    with pytest.raises(UserError, match="unknown --encoding-errors 'lenient'"):
        list(iter_tagged_documents(path, encoding_errors="lenient"))


def test_tagged_format_is_chosen_only_by_name() -> None:
    path = sample_path("zh_news")
    assert detect_format(path) == "text"  # a tagged file looks like any other .txt file
    assert detect_format(path, "tagged") == "tagged"
    first = next(iter_records([Path("sample:zh_news")], InputOptions(format="tagged")))
    assert first == Record("199801.txt:1", "", "tagged", "lines", PEOPLES_DAILY_TEXT[0])
    # The corpus config's --format choices are the readers' formats.
    assert typing.get_args(Format) == ("auto", *FORMATS)


# JSON lines and JSON -----------------------------------------------------------------------------

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
    with pytest.raises(UserError, match=r"ids\.jsonl, line 2: not valid UTF-8 at byte 28 "):
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


# WikiExtractor -----------------------------------------------------------------------------------

def test_wikiextractor_tree_in_order_with_compressed_files(tmp_path: Path) -> None:
    (tmp_path / "AA").mkdir()
    (tmp_path / "AB").mkdir()
    (tmp_path / "AB" / "wiki_00.bz2").write_bytes(bz2.compress(ESCAPED_DOCS.encode()))
    (tmp_path / "AA" / "wiki_01").write_text(WIKIEXTRACTOR_DOCS, encoding="utf-8")
    (tmp_path / "AA" / "wiki_00").write_text(WIKIEXTRACTOR_DOCS.replace('id="', 'id="1'), encoding="utf-8")
    docs = list(iter_wikiextractor_documents(tmp_path))
    assert [d.doc_id for d in docs] == ["1696", "1742", "696", "742", "7", "8"]
    assert [d.source for d in docs[1:]] == [str(tmp_path / "AA" / name) for name in ("wiki_00", "wiki_01",
                                                                                      "wiki_01")] + [
        str(tmp_path / "AB" / "wiki_00.bz2")] * 2
    aa_river, journal = docs[2:4]
    assert aa_river.title == "Aa River"
    assert aa_river.text.startswith("Aa is the name of a large number")  # the repeated title is gone
    assert journal.text.split("\n") == [
        "Algorithms is a peer-reviewed open access mathematics journal concerning design, analysis, and "
        "experiments on algorithms. The journal is published by MDPI and was established in 2008. Its "
        "editor-in-chief is Kazuo Iwama (Kyoto University).",
        "Abstracting and indexing.",
        "The journal is abstracted and indexed in Chemical Abstracts Service, Compendex, DBLP Computer "
        "Science Bibliography, Inspec, MathSciNet, Scopus, and Zentralblatt MATH."]
    assert list(iter_wikiextractor_documents(tmp_path / "AA" / "wiki_01")) == docs[2:4]


def test_wikiextractor_json_form_reads_the_same_documents(tmp_path: Path) -> None:
    plain, packed = tmp_path / "plain" / "wiki_00", tmp_path / "json" / "wiki_00.bz2"
    plain.parent.mkdir()
    packed.parent.mkdir()
    plain.write_text(WIKIEXTRACTOR_DOCS, encoding="utf-8")
    packed.write_bytes(bz2.compress(WIKIEXTRACTOR_JSON.encode()))
    journal = list(iter_wikiextractor_documents(plain))[1]
    assert list(iter_wikiextractor_documents(packed)) == [
        RawDocument(journal.doc_id, journal.title, journal.text, str(packed))]


def test_wikiextractor_titles_and_text_are_unescaped(tmp_path: Path) -> None:
    expected = [("7", 'AT&T "Bell" <System>', "AT&T is a company & more. It uses and x < y.\nHistory."),
                ("8", "Empty", "")]  # an empty article is still yielded: the caller counts it
    for name, content in (("wiki_00", ESCAPED_DOCS), ("wiki_01", ESCAPED_JSON)):
        (tmp_path / name).write_text(content, encoding="utf-8")
        docs = iter_wikiextractor_documents(tmp_path / name)
        assert [(d.doc_id, d.title, d.text) for d in docs] == expected


@pytest.mark.parametrize(("content", "message"), [
    (WIKIEXTRACTOR_DOCS[:-7], r"wiki_00, line 7: <doc id=\"742\"> is never closed by </doc> \(the file ends"),
    (WIKIEXTRACTOR_DOCS.replace("</doc>\n<doc id=\"742\"", "<doc id=\"742\""),
     r"wiki_00, line 1: <doc> is not closed before the next <doc> at line 6"),
    ("Anarchism is a political philosophy.\n",
     r"wiki_00, line 1: expected a <doc id=\"…\" …> line, found 'Anarchism is a political philosophy\.'; "
     r"is this WikiExtractor"),
    ('{"id": "12", "title": "Anarchism"}\n', r"wiki_00, line 1: a WikiExtractor --json record needs string "
                                             r"'id' and 'text' fields \(keys: id, title\)"),
    (WIKIEXTRACTOR_JSON[:-3] + "\n", r"wiki_00, line 1: not valid JSON"),
])
def test_bad_wikiextractor_output(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "wiki_00"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UserError, match=message):
        list(iter_wikiextractor_documents(path))


def test_undecodable_wikiextractor_output(tmp_path: Path) -> None:
    path = tmp_path / "wiki_00"
    path.write_bytes(WIKIEXTRACTOR_DOCS.encode().replace(b"Aa River\n\n", b"Aa River\n\n\xff"))
    with pytest.raises(UserError, match=r"wiki_00, line 4: not valid UTF-8 at byte 88 "):
        list(iter_wikiextractor_documents(path))
    doc = next(iter_wikiextractor_documents(path, encoding_errors="replace"))
    assert doc.text.startswith("\ufffdAa is the name")


# Parquet -----------------------------------------------------------------------------------------

def _summaries_table(summaries: list[tuple[str, str]]) -> pa.Table:
    return pa.table({"page": list(range(100, 100 + len(summaries))),
                     "title": [title for title, _ in summaries],
                     "content": [text for _, text in summaries],
                     "score": [0.5] * len(summaries)})


def test_parquet_directory_by_row_groups(tmp_path: Path, summaries: list[tuple[str, str]]) -> None:
    table = _summaries_table(summaries)
    (tmp_path / "data").mkdir()
    pq.write_table(table.slice(100), tmp_path / "data" / "train-00001.parquet", row_group_size=64)
    pq.write_table(table.slice(0, 100), tmp_path / "data" / "train-00000.parquet", row_group_size=64)
    docs = list(iter_parquet_documents(tmp_path, text_field="content"))
    assert [(d.title, d.text) for d in docs] == [(title, text) for title, text in summaries]
    assert [d.doc_id for d in docs[98:102]] == [
        "data/train-00000.parquet:98", "data/train-00000.parquet:99",
        "data/train-00001.parquet:0", "data/train-00001.parquet:1"]
    assert docs[0].source == str(tmp_path / "data" / "train-00000.parquet")
    by_page = iter_parquet_documents(tmp_path / "data" / "train-00001.parquet", "content", id_field="page")
    assert [d.doc_id for d in by_page][:2] == ["200", "201"]


def test_parquet_null_text_is_yielded_empty(tmp_path: Path) -> None:
    path = tmp_path / "nulls.parquet"
    pq.write_table(pa.table({"text": ["One.\r\nTwo.", None], "title": [None, "T"]}), path)
    assert [(d.doc_id, d.title, d.text) for d in iter_parquet_documents(path)] == [
        ("nulls.parquet:0", "", "One.\nTwo."), ("nulls.parquet:1", "T", "")]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"text_field": "text"}, r"no column 'text' \(columns: page, title, content, score\); pass the right "
                             r"--text-field"),
    ({"text_field": "page"}, r"column 'page' holds int64, not string values; pass a string column as "
                             r"--text-field"),
    ({"text_field": "content", "id_field": "url"}, r"no column 'url' .*--id-field"),
    ({"text_field": "content", "id_field": "score"}, r"column 'score' holds double, not string or integer"),
])
def test_bad_parquet_columns(tmp_path: Path, summaries: list[tuple[str, str]], kwargs: dict[str, str],
                             message: str) -> None:
    path = tmp_path / "wiki.parquet"
    pq.write_table(_summaries_table(summaries[:5]), path)
    with pytest.raises(UserError, match=rf"wiki\.parquet: {message}"):
        list(iter_parquet_documents(path, **kwargs))


def test_bad_parquet_files(tmp_path: Path) -> None:
    path = tmp_path / "ids.parquet"
    pq.write_table(pa.table({"text": ["a", "b"], "id": ["x", None]}), path)
    with pytest.raises(UserError, match=r"ids\.parquet, row 1: id column 'id' is null"):
        list(iter_parquet_documents(path, id_field="id"))
    path.write_bytes(b"PAR1 this is not really parquet")
    with pytest.raises(UserError, match=r"ids\.parquet: not a readable Parquet file"):
        list(iter_parquet_documents(path))


def test_parquet_memory_stays_flat_over_row_groups(tmp_path: Path) -> None:
    path = tmp_path / "big.parquet"
    rows = [f"Row {i}. " + "Lorem ipsum dolor sit amet. " * 30 for i in range(8_000)]
    pq.write_table(pa.table({"text": rows}), path, row_group_size=200, compression="none")
    assert pq.ParquetFile(path).metadata.num_row_groups == 40
    base, peak = pa.total_allocated_bytes(), 0
    texts = []
    for count, doc in enumerate(iter_parquet_documents(path), start=1):
        texts.append(doc.text)
        if count % 100 == 0:
            peak = max(peak, pa.total_allocated_bytes() - base)
    assert texts == rows
    # Arrow memory holds one batch of rows (~1.2 MB) at a time; caching the row groups read so far
    # (what pyarrow's default pre-buffering does) would reach the whole 7 MB file.
    assert peak < path.stat().st_size / 3, (peak, path.stat().st_size)


# Saved datasets ----------------------------------------------------------------------------------

def test_saved_dataset_reads_what_load_from_disk_reads(tmp_path: Path,
                                                        summaries: list[tuple[str, str]]) -> None:
    import datasets

    rows = {"title": [t for t, _ in summaries], "text": [x for _, x in summaries],
            "page": list(range(len(summaries)))}
    saved = tmp_path / "wiki"
    datasets.Dataset.from_dict(rows).shuffle(seed=0).save_to_disk(saved, num_shards=3)
    expected = datasets.load_from_disk(saved)
    docs = list(iter_saved_dataset_documents(saved))
    assert [d.text for d in docs] == list(expected["text"]) and len(docs) == len(summaries)
    assert [d.title for d in docs] == list(expected["title"])
    assert [d.doc_id for d in docs[:2]] + [docs[-1].doc_id] == ["wiki:0", "wiki:1", f"wiki:{len(docs) - 1}"]
    assert docs[-1].source == str(saved / "data-00002-of-00003.arrow")
    by_page = [d.doc_id for d in iter_saved_dataset_documents(saved, id_field="page")]
    assert by_page == [str(page) for page in expected["page"]]


def test_saved_dataset_dict_reads_every_split_in_order(tmp_path: Path,
                                                       summaries: list[tuple[str, str]]) -> None:
    import datasets

    texts = [text for _, text in summaries]
    saved = tmp_path / "splits"
    datasets.DatasetDict({
        "validation": datasets.Dataset.from_dict({"body": texts[:40]}),
        "train": datasets.Dataset.from_dict({"body": texts[40:]}),
    }).save_to_disk(saved)
    loaded = datasets.load_from_disk(saved)
    docs = list(iter_saved_dataset_documents(saved, text_field="body"))
    assert [d.text for d in docs] == list(loaded["validation"]["body"]) + list(loaded["train"]["body"])
    assert [d.doc_id for d in docs[39:41]] == ["validation:39", "train:0"]
    with pytest.raises(UserError, match=r"data-00000-of-00001\.arrow: no column 'text' \(columns: body\); "
                                        r"pass the right --text-field"):
        list(iter_saved_dataset_documents(saved))


def test_bad_saved_datasets(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"not a saved dataset \(no state\.json or dataset_dict\.json\)"):
        list(iter_saved_dataset_documents(tmp_path))
    (tmp_path / "state.json").write_text(json.dumps({"_data_files": [{"filename": "data.arrow"}]}))
    (tmp_path / "data.arrow").write_bytes(b"not an arrow stream at all")
    with pytest.raises(UserError, match=r"data\.arrow: not a readable Arrow stream"):
        list(iter_saved_dataset_documents(tmp_path))
    table = pa.table({"text": [f"Row {i}." for i in range(5000)]})
    with pa.ipc.new_stream(tmp_path / "data.arrow", table.schema) as writer:
        writer.write_table(table, max_chunksize=1000)
    (tmp_path / "data.arrow").write_bytes((tmp_path / "data.arrow").read_bytes()[:30_000])
    with pytest.raises(UserError, match=r"data\.arrow: damaged after row 2000 "):
        list(iter_saved_dataset_documents(tmp_path))
    (tmp_path / "state.json").write_text(json.dumps({"_data_files": "data.arrow"}))
    with pytest.raises(UserError, match=r"state\.json: '_data_files' must list the Arrow files"):
        list(iter_saved_dataset_documents(tmp_path))
    (tmp_path / "dataset_dict.json").write_text(json.dumps({"splits": ["train"]}))
    with pytest.raises(UserError, match=r"train/state\.json: cannot be read \(No such file or directory\)"):
        list(iter_saved_dataset_documents(tmp_path))
    (tmp_path / "dataset_dict.json").write_text("{not json")
    with pytest.raises(UserError, match=r"dataset_dict\.json: not valid JSON"):
        list(iter_saved_dataset_documents(tmp_path))


# Format detection --------------------------------------------------------------------------------

def _tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)
    return root


@pytest.mark.parametrize(("files", "expected"), [
    ({"state.json": b"{}", "data-00000-of-00001.arrow": b""}, "dataset"),
    ({"dataset_dict.json": b"{}", "train/state.json": b"{}"}, "dataset"),
    ({"data/train-00000.parquet": b"", "README.md": b""}, "parquet"),
    ({"AA/wiki_00": b"<doc ", "AB/wiki_17.bz2": b""}, "wikiextractor"),
    ({"a.jsonl": b"", "b/c.jsonl.gz": b""}, "jsonl"),
    ({"books/a.txt": b"", "b.txt.bz2": b"", "notes.md": b""}, "text"),
])
def test_directory_formats(tmp_path: Path, files: dict[str, bytes], expected: str) -> None:
    assert detect_format(_tree(tmp_path, files)) == expected


@pytest.mark.parametrize(("name", "content", "expected"), [
    ("wiki.xml", b"<mediawiki xmlns=", "mediawiki"),
    ("wiki_00.bz2", bz2.compress(WIKIEXTRACTOR_DOCS.encode()), "wikiextractor"),
    ("dump.gz", gzip.compress(WIKIEXTRACTOR_JSON.encode()), "wikiextractor"),
    ("wiki_00", WIKIEXTRACTOR_JSON.encode(), "wikiextractor"),
    ("wiki_01", b"\xef\xbb\xbf\n" + WIKIEXTRACTOR_DOCS.encode(), "wikiextractor"),
    ("export", b'<?xml version="1.0"?>\n<mediawiki', "mediawiki"),
    ("dump.xml.gz", gzip.compress(b"<mediawiki>"), "mediawiki"),
    ("c4.jsonl.gz", b"", "jsonl"),
    ("notes.txt.bz2", b"", "text"),
    ("notes.txt", b"<doc ", "text"),  # the name decides where it can
    ("summaries.json", b"{}", "json"),
    ("train.parquet", b"", "parquet"),
    ("part-0", b"PAR1\x15\x04", "parquet"),
])
def test_file_formats(tmp_path: Path, name: str, content: bytes, expected: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    assert detect_format(path) == expected


def test_sample_formats() -> None:
    assert detect_format(sample_path("enwiki")) == "mediawiki"
    assert detect_format(sample_path("wiki_summaries")) == "json"
    assert detect_format(sample_path("zh_news")) == "text"


def test_undetectable_formats(tmp_path: Path) -> None:
    formats = "--format mediawiki|wikiextractor|text|tagged|jsonl|json|parquet|dataset"
    (tmp_path / "README").write_text("Just some prose.", encoding="utf-8")
    with pytest.raises(UserError, match=rf"README: cannot tell the input format .*; pass {formats}$"):
        detect_format(tmp_path / "README")
    assert detect_format(tmp_path / "README", "text") == "text"
    with pytest.raises(UserError, match="unknown --format 'csv'; use auto or one of mediawiki, wiki"):
        detect_format(tmp_path / "README", "csv")
    with pytest.raises(UserError, match=r"absent: no such file or directory"):
        detect_format(tmp_path / "absent")
    with pytest.raises(UserError, match=r"no input files in this directory or below it .*--format"):
        detect_format(tmp_path)
    _tree(tmp_path, {"a.txt": b"", "b.jsonl": b"", "c.parquet": b""})
    with pytest.raises(UserError, match=r"several kinds of input \(jsonl, parquet, text\); give each kind"):
        detect_format(tmp_path)


def test_dictionary_encoded_text_column_reads_as_strings(tmp_path: Path) -> None:
    texts = ["Paris is the capital of France.", "Rome is the capital of Italy."] * 2
    pq.write_table(pa.table({"text": pa.array(texts).dictionary_encode()}), tmp_path / "cat.parquet")
    assert [doc.text for doc in iter_parquet_documents(tmp_path / "cat.parquet")] == texts


def test_json_lines_under_a_json_name_points_at_format_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "records.json"
    path.write_text('{"text": "one"}\n{"text": "two"}\n', encoding="utf-8")
    with pytest.raises(UserError, match="--format jsonl"):
        list(iter_json_documents(path))
