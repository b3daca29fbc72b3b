"""`ptk corpus build` through the CLI: real dumps in, shards and manifest out; bad input → exit 2.

The bad-input cases damage the real English Wikipedia dump (gensim's sample) in tmp_path: cut it,
corrupt it, inject markup or declarations into it. Each failure must be one `error:` line naming the
file and the position, exit code 2, no manifest.json, and every shard finished before the damage kept.

    pytest tests/cli/test_corpus_cli.py -q
"""

from __future__ import annotations

import bz2
import gzip
import html
import json
import re
import zlib
from pathlib import Path

import datasets
import pytest
from conftest import assert_clean_failure
from typer.testing import CliRunner, Result

from pretrain_cli.cli.app import app
from pretrain_cli.samples import sample_path
from pretrain_cli.stages.corpus.mediawiki import CHUNK_BYTES
from pretrain_cli.store import Manifest, read_manifest, read_shard

runner = CliRunner()
# Document ids carry the dump's file name, so every damaged copy and the intact reference share it:
# then equal pages make byte-equal shards.
DUMP = "enwiki.xml.bz2"


def build(*args: str) -> Result:
    return runner.invoke(app, ["corpus", "build", *args])


@pytest.fixture(scope="module")
def enwiki_xml() -> bytes:
    return bz2.decompress(sample_path("enwiki").read_bytes())


@pytest.fixture(scope="module")
def intact(tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    """The whole real dump built with 10 documents per shard: what a damaged run must match."""
    root = tmp_path_factory.mktemp("intact")
    (root / DUMP).write_bytes(sample_path("enwiki").read_bytes())
    result = build(str(root / DUMP), "--out", str(root / "out"), "--docs-per-shard", "10")
    assert result.exit_code == 0, result.output
    return read_manifest(root / "out", "corpus")


def last_complete_title(xml: bytes) -> str:
    """The title of the last page whose `</page>` lies in `xml` (a readable prefix of a dump)."""
    titles = re.findall(rb"<title>(.*?)</title>", xml[: xml.rindex(b"</page>")])
    return html.unescape(titles[-1].decode())


PAGE_ID = re.compile(rb"<page>\s*<title>[^<]*</title>\s*<ns>-?\d+</ns>\s*<id>(\d+)</id>")


def complete_page_ids(xml: bytes) -> set[str]:
    return {m.decode() for m in PAGE_ID.findall(xml[: xml.rindex(b"</page>")])}


def page_text_span(xml: bytes, title: str) -> tuple[int, int]:
    """Start and end of the `<text …>…</text>` element of the page called `title`."""
    page = xml.index(f"<title>{title}</title>".encode())
    start = xml.index(b"<text", page)
    return start, xml.index(b"</text>", start) + len(b"</text>")


def dump_head(xml: bytes, pages: int) -> bytes:
    """The real dump cut after its first `pages` pages and closed again: a small, valid export."""
    end = 0
    for _ in range(pages):
        end = xml.index(b"</page>", end) + len(b"</page>")
    return xml[:end] + b"\n</mediawiki>\n"


def error_line(result: Result) -> str:
    return result.output.strip()


def byte_offset(line: str) -> int:
    found = re.search(r"byte ([\d,]+)", line)
    assert found, line
    return int(found[1].replace(",", ""))


def shard_texts(out: Path) -> list[str]:
    manifest = read_manifest(out, "corpus")
    return [text for s in manifest.shards for text in read_shard(out / s.file).column("text").to_pylist()]


def zh_news_text(lines: slice) -> str:
    """Lines of the real People's Daily sample, POS tags stripped, a blank line between paragraphs."""
    raw = sample_path("zh_news").read_text(encoding="utf-8").splitlines()[lines]
    return "\n\n".join(re.sub(r"/[a-zA-Z]+\s*", "", line).strip() for line in raw if line.strip())


# --- good input -------------------------------------------------------------------------------


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
    (tmp_path / "txt" / "a.txt").write_text(zh_news_text(slice(0, 30)), encoding="utf-8")
    summaries = json.loads(sample_path("wiki_summaries").read_text(encoding="utf-8"))
    extract = next(v["extract"] for v in summaries.values() if len(v["extract"]) >= 300)
    (tmp_path / "docs.jsonl").write_text(json.dumps({"body": extract}) + "\n")
    out = tmp_path / "out"
    result = build(str(tmp_path / "txt"), str(tmp_path / "docs.jsonl"), "--text-field", "body",
                   "--out", str(out))
    assert result.exit_code == 0, result.output
    assert read_manifest(out, "corpus").stats["documents"] == 2
    summaries = build("sample:wiki_summaries", "--out", str(tmp_path / "s"), "--limit", "50")
    assert summaries.exit_code == 0, summaries.output
    assert read_manifest(tmp_path / "s", "corpus").stats["documents"] == 50


# --- damaged dumps ----------------------------------------------------------------------------


def truncated_run(tmp_path: Path, fraction: float) -> tuple[Path, Path, bytes, Result]:
    """The real dump cut at `fraction` of its compressed bytes, built with 10 documents per shard:
    (dump, out, the XML a decompressor gets out of the cut file, the CLI result)."""
    dump = tmp_path / DUMP
    data = sample_path("enwiki").read_bytes()
    dump.write_bytes(data[: int(len(data) * fraction)])
    out = tmp_path / "out"
    result = build(str(dump), "--out", str(out), "--docs-per-shard", "10")
    # bz2 decodes whole blocks only: what a decompressor gets out of the cut file is what the stage saw.
    return dump, out, bz2.BZ2Decompressor().decompress(dump.read_bytes()), result


def finished_shards(intact: Manifest, readable: bytes) -> list[str]:
    """The shards of the intact run whose documents all come from pages complete in `readable`."""
    finished = {f"{DUMP}:{page_id}" for page_id in complete_page_ids(readable)}
    return [s.file for s in intact.shards
            if read_shard(intact.directory / s.file).column("id")[-1].as_py() in finished]


@pytest.mark.parametrize("fraction", [0.3, 0.8])
def test_truncated_bz2_names_file_offset_and_last_page(tmp_path: Path, fraction: float) -> None:
    dump, out, readable, result = truncated_run(tmp_path, fraction)
    assert_clean_failure(result, out, str(dump), last_complete_title(readable))
    assert 0 < byte_offset(error_line(result)) <= dump.stat().st_size


@pytest.mark.parametrize("fraction", [0.3, 0.8])
def test_truncated_bz2_keeps_every_finished_shard(tmp_path: Path, intact: Manifest, fraction: float) -> None:
    _, out, readable, result = truncated_run(tmp_path, fraction)
    assert result.exit_code == 2 and not (out / "manifest.json").exists()
    expected = finished_shards(intact, readable)
    assert expected and sorted(path.name for path in out.glob("train-*.arrow")) == expected


def test_truncated_bz2_rerun_reuses_kept_shards(tmp_path: Path, intact: Manifest) -> None:
    dump, out, readable, result = truncated_run(tmp_path, 0.8)
    assert result.exit_code == 2 and not (out / "manifest.json").exists()
    kept = sorted(path.name for path in out.glob("train-*.arrow"))
    # Whatever was kept is among the intact run's finished shards, byte for byte.
    assert kept and set(kept) <= set(finished_shards(intact, readable))
    for name in kept:
        assert (out / name).read_bytes() == (intact.directory / name).read_bytes()

    # The repaired file at the same path completes the run without rewriting the kept shards.
    stamps = {name: ((out / name).stat().st_ino, (out / name).stat().st_mtime_ns) for name in kept}
    dump.write_bytes(sample_path("enwiki").read_bytes())
    again = build(str(dump), "--out", str(out), "--docs-per-shard", "10")
    assert again.exit_code == 0, again.output
    assert stamps == {name: ((out / name).stat().st_ino, (out / name).stat().st_mtime_ns) for name in kept}
    assert [s.sha256 for s in read_manifest(out, "corpus").shards] == [s.sha256 for s in intact.shards]


def test_corrupt_bz2_block_names_the_offset(tmp_path: Path) -> None:
    data = bytearray(sample_path("enwiki").read_bytes())
    damage = len(data) // 2
    data[damage:damage + 8] = bytes(8)
    dump = tmp_path / DUMP
    dump.write_bytes(data)
    out = tmp_path / "out"
    result = build(str(dump), "--out", str(out))
    readable = bz2.BZ2Decompressor().decompress(bytes(data[:damage]))
    assert_clean_failure(result, out, str(dump), last_complete_title(readable))
    # "near": the decompressor reads ahead a buffer or so before it notices.
    assert damage <= byte_offset(error_line(result)) <= damage + (64 << 10)


def test_truncated_gz(tmp_path: Path, enwiki_xml: bytes) -> None:
    packed = gzip.compress(enwiki_xml, mtime=0)
    dump = tmp_path / "enwiki.xml.gz"
    dump.write_bytes(packed[: len(packed) // 2])
    out = tmp_path / "out"
    result = build(str(dump), "--out", str(out))
    readable = zlib.decompressobj(wbits=31).decompress(dump.read_bytes())
    assert_clean_failure(result, out, str(dump), last_complete_title(readable))
    assert 0 < byte_offset(error_line(result)) <= dump.stat().st_size


def test_truncated_plain_xml_mid_page(tmp_path: Path, enwiki_xml: bytes) -> None:
    start, _ = page_text_span(enwiki_xml, "Albedo")
    cut = enwiki_xml[: start + 5000]
    dump = tmp_path / "enwiki.xml"
    dump.write_bytes(cut)
    out = tmp_path / "out"
    result = build(str(dump), "--out", str(out))
    lines = cut.count(b"\n") + 1
    assert_clean_failure(result, out, str(dump), f"line {lines}", "column", last_complete_title(cut))


def with_injected(xml: bytes, injected: str) -> tuple[bytes, int]:
    """The real dump with `injected` written into Albedo's text, and the line where parsing must fail."""
    start, end = page_text_span(xml, "Albedo")
    at = xml.index(b"\n", start + 3000)  # mid-text, at a line break, as an editor would
    bad = xml[:at] + injected.encode() + xml[at:]
    # Either way the page's own </text> no longer matches the open element: that is where it fails.
    return bad, bad[: end + len(injected)].count(b"\n") + 1


@pytest.mark.parametrize("injected", ["</text>", '<ref name="x">'], ids=["stray-close", "unclosed"])
def test_malformed_page_names_line_and_last_page(tmp_path: Path, enwiki_xml: bytes, injected: str) -> None:
    bad, line = with_injected(enwiki_xml, injected)
    dump = tmp_path / "enwiki.xml"
    dump.write_bytes(bad)
    out = tmp_path / "out"
    result = build(str(dump), "--out", str(out))
    assert_clean_failure(result, out, str(dump), f"line {line}", "column", "'AlbaniaEconomy'")


def test_malformed_page_keeps_finished_shards(tmp_path: Path, enwiki_xml: bytes) -> None:
    dump = tmp_path / "enwiki.xml"
    dump.write_bytes(with_injected(enwiki_xml, "</text>")[0])
    out = tmp_path / "out"
    result = build(str(dump), "--out", str(out), "--docs-per-shard", "1")
    assert result.exit_code == 2 and not (out / "manifest.json").exists()
    kept = [read_shard(path).column("title").to_pylist() for path in sorted(out.glob("train-*.arrow"))]
    assert kept == [["Anarchism"], ["Autism"]]


def test_malformed_xml_minimal(tmp_path: Path) -> None:
    bad = tmp_path / "bad.xml"
    bad.write_text("<mediawiki><page><title>A</title><ns>0</ns><text>hello</page></mediawiki>")
    out = tmp_path / "out"
    assert_clean_failure(build(str(bad), "--out", str(out)), out, "bad.xml", "line 1")


# --- entity declarations ----------------------------------------------------------------------

LAUGHS = ('<!DOCTYPE mediawiki [\n<!ENTITY lol0 "lol">\n'
          + "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">\n' for i in range(1, 10)) + "]>\n")


def declaring(head: bytes, doctype: str, reference: str) -> str:
    """The real dump head with `doctype` before the root and `reference` inside Anarchism's text."""
    _, end = page_text_span(head, "Anarchism")
    text = head[: end - len(b"</text>")] + reference.encode() + head[end - len(b"</text>"):]
    return doctype + text.decode()


def attack(kind: str, head: bytes, tmp_path: Path) -> tuple[str, bytes]:
    if kind == "billion-laughs":
        return "enwiki.xml", declaring(head, LAUGHS, "&lol9;").encode()
    if kind == "billion-laughs-bz2":
        return DUMP, bz2.compress(declaring(head, LAUGHS, "&lol9;").encode())
    if kind == "external-entity":
        doctype = f'<!DOCTYPE mediawiki [<!ENTITY secret SYSTEM "{(tmp_path / "secret.txt").as_uri()}">]>\n'
        return "enwiki.xml", declaring(head, doctype, "&secret;").encode()
    assert kind == "utf-16"
    document = '<?xml version="1.0" encoding="UTF-16"?>\n' + declaring(head, LAUGHS, "&lol9;")
    return "enwiki.xml", document.encode("utf-16")


@pytest.mark.parametrize("kind", ["billion-laughs", "billion-laughs-bz2", "external-entity", "utf-16"])
def test_entity_declarations_refused(tmp_path: Path, enwiki_xml: bytes, kind: str) -> None:
    (tmp_path / "secret.txt").write_text("SECRET-MARKER")
    name, data = attack(kind, dump_head(enwiki_xml, 20), tmp_path)
    dump = tmp_path / name
    dump.write_bytes(data)
    out = tmp_path / "out"
    result = build(str(dump), "--out", str(out))
    assert_clean_failure(result, out, str(dump))
    # UTF-16 may be refused for its encoding before any declaration is seen; either way, unparsed.
    assert "DOCTYPE" in error_line(result) or (kind == "utf-16" and "UTF-8" in error_line(result))
    assert not list(out.glob("*.arrow")) and "SECRET-MARKER" not in result.output
    assert not any("SECRET-MARKER" in path.read_text(errors="replace")
                   for path in out.glob("*") if path.is_file())


# Where reads of a plain file end: the buffered reader's first fill (one or two disk blocks), then
# the stage's own read size. A declaration cut in two by a read must still be seen.
READ_BOUNDARIES = [4096, 8192, CHUNK_BYTES, 4096 + CHUNK_BYTES, 8192 + CHUNK_BYTES]


@pytest.mark.parametrize("boundary", READ_BOUNDARIES)
def test_declaration_split_across_reads_refused(tmp_path: Path, enwiki_xml: bytes, boundary: int) -> None:
    # An external DTD is a single "<!DOCTYPE" (no "<!ENTITY" later in the file to give it away).
    dtd = tmp_path / "evil.dtd"
    dtd.write_text('<!ENTITY secret "SECRET-MARKER">')
    doctype = f'<!DOCTYPE mediawiki SYSTEM "{dtd.as_uri()}">\n'
    # A comment (legal before the DOCTYPE) long enough that "<!DO" ends one read and "CTYPE" starts the next.
    comment = "<!--" + " " * (boundary - 4 - len("<!---->")) + "-->"
    dump = tmp_path / "enwiki.xml"
    dump.write_bytes((comment + declaring(dump_head(enwiki_xml, 20), doctype, "&secret;")).encode())
    out = tmp_path / "out"
    result = build(str(dump), "--out", str(out))
    assert_clean_failure(result, out, str(dump), "DOCTYPE")
    assert not list(out.glob("*.arrow"))


# --- undecodable text -------------------------------------------------------------------------


def test_undecodable_txt_names_file_and_offset(tmp_path: Path) -> None:
    (tmp_path / "news").mkdir()
    (tmp_path / "news" / "a.txt").write_text(zh_news_text(slice(0, 30)), encoding="utf-8")
    good = zh_news_text(slice(30, 60)).encode()
    # A character that lost its last two bytes (a file cut and appended to): the classic UTF-8 break.
    offset = good.index("。".encode())
    (tmp_path / "news" / "b.txt").write_bytes(good[:offset + 1] + good[offset + 3:])
    out = tmp_path / "out"
    result = build(str(tmp_path / "news"), "--out", str(out))
    assert_clean_failure(result, out, str(tmp_path / "news" / "b.txt"), "--encoding-errors replace")
    assert byte_offset(error_line(result)) == offset

    replaced = build(str(tmp_path / "news"), "--out", str(out), "--encoding-errors", "replace")
    assert replaced.exit_code == 0, replaced.output
    texts = shard_texts(out)
    assert len(texts) == 2 and "\ufffd" not in texts[0] and "\ufffd" in texts[1]


def test_undecodable_jsonl_names_file_line_and_offset(tmp_path: Path) -> None:
    summaries = json.loads(sample_path("wiki_summaries").read_text(encoding="utf-8"))
    long = [v["extract"] for v in summaries.values() if len(v["extract"]) >= 300]
    plain = [text for text in long if text.isascii()][:3]
    accented = next(text for text in long if any(127 < ord(ch) < 256 for ch in text))
    char = next(ch for ch in accented if 127 < ord(ch) < 256)
    # One record saved as Latin-1 among UTF-8 ones: a byte that cannot start a UTF-8 character.
    records = [*plain[:2], accented, plain[2]]
    lines = [json.dumps({"text": text}, ensure_ascii=False).encode() for text in records]
    # Counted from the start of the file (where a hex editor or `dd skip=` finds it), not of the line.
    offset = len(lines[0]) + len(lines[1]) + 2 + lines[2].index(char.encode())
    lines[2] = lines[2].replace(char.encode(), char.encode("latin-1"))
    path = tmp_path / "records.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "out"
    result = build(str(path), "--out", str(out))
    assert_clean_failure(result, out, str(path), "line 3", "--encoding-errors replace")
    assert byte_offset(error_line(result)) == offset

    replaced = build(str(path), "--out", str(out), "--encoding-errors", "replace")
    assert replaced.exit_code == 0, replaced.output
    texts = shard_texts(out)
    assert len(texts) == 4 and ["\ufffd" in text for text in texts] == [False, False, True, False]


# --- pages without text -----------------------------------------------------------------------


def test_pages_without_text_are_skipped_and_counted(tmp_path: Path, enwiki_xml: bytes) -> None:
    head = dump_head(enwiki_xml, 20)  # 3 articles (Anarchism, Autism, Albedo) and 17 redirects
    for title, element in [("Anarchism", b'<text xml:space="preserve" />'),
                           ("Autism", b'<text xml:space="preserve">  \n\t \n</text>')]:
        start, end = page_text_span(head, title)
        head = head[:start] + element + head[end:]
    dump = tmp_path / DUMP
    dump.write_bytes(bz2.compress(head))
    out = tmp_path / "out"
    result = build(str(dump), "--out", str(out))
    assert result.exit_code == 0, result.output
    manifest = read_manifest(out, "corpus")
    assert manifest.stats["dropped"] == {"empty_page": 2, "redirect": 17}
    assert manifest.stats["documents"] == 1
    assert read_shard(out / manifest.shards[0].file).column("title").to_pylist() == ["Albedo"]


# --- inputs, options and the output directory -------------------------------------------------


def test_missing_input(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert_clean_failure(build(str(tmp_path / "nope.xml.bz2"), "--out", str(out)), out,
                         str(tmp_path / "nope.xml.bz2"), "no such file")


def test_missing_inputs_reported_before_any_work(tmp_path: Path) -> None:
    (tmp_path / "news.txt").write_text(zh_news_text(slice(0, 30)), encoding="utf-8")
    out = tmp_path / "out"
    result = build(str(tmp_path / "news.txt"), str(tmp_path / "gone.txt"), str(tmp_path / "lost.jsonl"),
                   "--out", str(out), "--docs-per-shard", "1")
    assert_clean_failure(result, out, "gone.txt", "lost.jsonl")
    assert not list(out.glob("*.arrow"))


@pytest.mark.parametrize("contents", [[], ["notes.md", "table.csv", "sub/readme.rst"]],
                         ids=["empty", "no-txt"])
def test_directory_without_usable_files(tmp_path: Path, contents: list[str]) -> None:
    folder = tmp_path / "inbox"
    folder.mkdir()
    for name in contents:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(zh_news_text(slice(0, 5)), encoding="utf-8")
    out = tmp_path / "out"
    assert_clean_failure(build(str(folder), "--out", str(out)), out, str(folder), "*.txt")


def test_unknown_format_names_the_choices(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = build("sample:enwiki", "--out", str(out), "--format", "wikipedia")
    assert result.exit_code == 2 and "Traceback" not in result.output
    for needle in ["--format", "'wikipedia'", "'auto'", "'mediawiki'", "'text'", "'jsonl'", "'json'"]:
        assert needle in result.output
    assert not out.exists()


def test_unknown_format_is_one_error_line(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert_clean_failure(build("sample:enwiki", "--out", str(out), "--format", "wikipedia"), out,
                         "--format", "wikipedia")


def test_jsonl_record_without_text_field(tmp_path: Path) -> None:
    summaries = json.loads(sample_path("wiki_summaries").read_text(encoding="utf-8"))
    records = [{"title": title, "text": entry["extract"]} for title, entry in list(summaries.items())[:4]]
    del records[2]["text"]
    path = tmp_path / "records.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    out = tmp_path / "out"
    assert_clean_failure(build(str(path), "--out", str(out)), out, str(path), "line 3", "'text'",
                         "--text-field")


@pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
def test_foreign_output_directory_untouched(tmp_path: Path, force: bool) -> None:
    out = tmp_path / "mine"
    (out / "drafts").mkdir(parents=True)
    files = {"notes.txt": b"my notes\n", "drafts/chapter.md": b"# one\n", "train-00000.arrow": b"not arrow"}
    for name, data in files.items():
        (out / name).write_bytes(data)
    result = build("sample:enwiki", "--out", str(out), *(["--force"] if force else []))
    assert_clean_failure(result, out, str(out), "not empty")
    assert {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} == set(files)
    assert all((out / name).read_bytes() == data for name, data in files.items())


def test_empty_corpus(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "short.txt").write_text("Too short.")
    out = tmp_path / "out"
    assert_clean_failure(build(str(tmp_path / "empty"), "--out", str(out)), out, "no documents")


def test_stats_table_sums_the_parts_of_a_split_build(tmp_path: Path) -> None:
    parts = []
    for i in range(2):
        out = tmp_path / f"part{i}"
        result = runner.invoke(app, ["corpus", "build", "sample:enwiki", "--out", str(out), "--workers", "1",
                                     "--shard-index", str(i), "--num-shards", "2"])
        assert result.exit_code == 0, result.output
        parts.append(str(out))
    result = runner.invoke(app, ["corpus", "stats", *parts], terminal_width=200)
    assert result.exit_code == 0, result.output
    flat = " ".join(re.sub(r"[│┃━╇─┼]", " ", result.output).split())  # the table's cells, in order
    assert "input records 206" in flat  # 106 articles + 100 redirects, split between the parts
    assert "dropped: redirect 100" in flat and "dropped: disambiguation 8" in flat
    assert "language en" in flat


def test_stats_of_an_unfinished_directory_is_one_error_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["corpus", "stats", str(tmp_path)])
    assert_clean_failure(result, tmp_path, "no manifest.json")


def test_a_bad_template_policy_file_is_one_error_line(tmp_path: Path) -> None:
    rules = tmp_path / "templates.yaml"
    rules.write_text("templates:\n  convert: explode\n", encoding="utf-8")
    out = tmp_path / "out"
    result = build("sample:enwiki", "--out", str(out), "--templates", str(rules))
    assert_clean_failure(result, out, "templates.yaml", "'convert'", "unknown rule 'explode'", "valid rules")
    assert not out.exists() or not any(out.glob("*.arrow"))
