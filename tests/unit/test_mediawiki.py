"""The MediaWiki export reader on the real English Wikipedia excerpt gensim ships, and on broken files."""

from __future__ import annotations

import bz2
import gzip
from collections import Counter
from pathlib import Path

import pytest

from pretrain_cli.errors import UserError
from pretrain_cli.samples import sample_path
from pretrain_cli.stages.corpus.mediawiki import Page, iter_pages

ENWIKI = sample_path("enwiki")  # 206 pages: 106 articles + 100 redirects
TABLES = sample_path("enwiki_tables")  # 5 table-heavy articles


def export(body: str, schema: str = "http://www.mediawiki.org/xml/export-0.10/") -> str:
    return f'<mediawiki xmlns="{schema}" version="0.10" xml:lang="en">\n{body}\n</mediawiki>\n'


def test_real_dump_streams_every_page() -> None:
    pages = list(iter_pages(ENWIKI))
    assert len(pages) == 206
    assert sum(page.redirect for page in pages) == 100
    assert Counter(page.ns for page in pages) == {0: 205, 4: 1}
    assert pages[0] == Page(title="AccessibleComputing", ns=0, page_id="10", redirect=True,
                            text=pages[0].text)
    assert pages[0].text.startswith("#REDIRECT [[Computer accessibility]]")
    anarchism = pages[1]
    assert (anarchism.title, anarchism.page_id, anarchism.redirect) == ("Anarchism", "12", False)
    # The XML layer already decoded &lt;ref&gt; and &quot;: the text is raw wikitext.
    assert "<ref" in anarchism.text and "&lt;" not in anarchism.text


def test_plain_and_gzip_exports_read_the_same_pages(tmp_path: Path) -> None:
    xml = bz2.decompress(TABLES.read_bytes())
    (tmp_path / "tables.xml").write_bytes(xml)
    (tmp_path / "tables.xml.gz").write_bytes(gzip.compress(xml, compresslevel=1))
    expected = list(iter_pages(TABLES))
    assert [page.title for page in expected][:2] == ["Constructive vote of no confidence",
                                                     "List of Prison Break characters"]
    assert list(iter_pages(tmp_path / "tables.xml")) == expected
    assert list(iter_pages(tmp_path / "tables.xml.gz")) == expected


def test_any_export_schema_version_and_missing_text(tmp_path: Path) -> None:
    body = ("<page><title>Old</title><id>7</id><revision><id>1</id><text>first</text></revision>"
            "<revision><id>2</id><text>second</text></revision></page>"
            "<page><title>Talk:Empty</title><ns>1</ns><id>8</id><revision><id>3</id></revision></page>")
    path = tmp_path / "old.xml"
    path.write_text(export(body, schema="http://www.mediawiki.org/xml/export-0.3/"), encoding="utf-8")
    assert list(iter_pages(path)) == [
        Page(title="Old", ns=0, page_id="7", redirect=False, text="second"),  # the last revision wins
        Page(title="Talk:Empty", ns=1, page_id="8", redirect=False, text=""),
    ]


def test_truncated_bz2_names_the_file_offset_and_last_page(tmp_path: Path) -> None:
    data = ENWIKI.read_bytes()
    path = tmp_path / "half.xml.bz2"
    path.write_bytes(data[:len(data) // 2])
    titles = []
    with pytest.raises(UserError) as caught:
        for page in iter_pages(path):
            titles.append(page.title)
    message = str(caught.value)
    assert titles and str(path) in message and "truncated" in message
    assert f"last complete page: {titles[-1]!r}" in message
    assert "near byte" in message and "Download the file again" in message


def test_malformed_xml_names_the_line_and_last_page(tmp_path: Path) -> None:
    path = tmp_path / "bad.xml"
    path.write_text(export("<page><title>Good</title><ns>0</ns><id>1</id></page>\n"
                           "<page><title>Bad</title>\n<ns>0</nss>\n</page>"), encoding="utf-8")
    with pytest.raises(UserError, match=r"bad\.xml: malformed XML at line 4, column \d+ .*'Good'"):
        list(iter_pages(path))


def test_truncated_plain_xml_is_a_user_error(tmp_path: Path) -> None:
    path = tmp_path / "cut.xml"
    path.write_bytes(bz2.decompress(TABLES.read_bytes())[:50_000])
    with pytest.raises(UserError, match="malformed XML at line"):
        list(iter_pages(path))


def test_entity_declarations_are_refused_before_expansion(tmp_path: Path) -> None:
    laughs = "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))
    path = tmp_path / "lol.xml"
    path.write_text(f'<?xml version="1.0"?>\n<!DOCTYPE mediawiki [<!ENTITY lol0 "lol">{laughs}]>\n'
                    + export("<page><title>&lol9;</title><ns>0</ns><id>1</id></page>"), encoding="utf-8")
    with pytest.raises(UserError, match="declares a DOCTYPE or ENTITY"):
        list(iter_pages(path))


def test_re_encoded_declarations_cannot_slip_past(tmp_path: Path) -> None:
    # In UTF-16 "<!DOCTYPE" is not the bytes b"<!DOCTYPE"; the reader insists on UTF-8 instead.
    path = tmp_path / "utf16.xml"
    doc = '<?xml version="1.0" encoding="utf-16"?><!DOCTYPE m [<!ENTITY e "EXPANDED">]>'
    path.write_bytes((doc + export("<page><title>&e;</title><ns>0</ns><id>1</id></page>")).encode("utf-16"))
    with pytest.raises(UserError, match="not valid UTF-8 at byte 0"):
        list(iter_pages(path))


def test_entity_declaration_split_across_chunks_is_refused(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pretrain_cli.stages.corpus.mediawiki.CHUNK_BYTES", 7)
    path = tmp_path / "xxe.xml"
    path.write_text('<!DOCTYPE m [<!ENTITY x SYSTEM "file:///etc/passwd">]><m>&x;</m>', encoding="utf-8")
    with pytest.raises(UserError, match="DOCTYPE or ENTITY"):
        list(iter_pages(path))


def test_missing_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such file"):
        list(iter_pages(tmp_path / "nope.xml.bz2"))
