"""Wikitext cleaning, construct by construct on snippets from the real dump, then on the whole dump."""

from __future__ import annotations

import pytest

from pretrain_cli.samples import sample_path
from pretrain_cli.stages.corpus.mediawiki import iter_pages
from pretrain_cli.stages.corpus.wikitext import wikitext_to_paragraphs


def clean(text: str) -> str:
    return "\n\n".join(wikitext_to_paragraphs(text))


@pytest.mark.parametrize(("wikitext", "expected"), [
    # links: label, target, link trail, pipe trick, anchors
    ("from the Greek [[privative alpha|privative prefix]] and the [[suffix]]es",
     "from the Greek privative prefix and the suffixes"),
    ("[[Mercury (planet)|]] and [[Paris, Texas|]] and [[Anarchism#Etymology]] [[#History]]",
     "Mercury and Paris and Anarchism History"),
    ("Russian theorist [[wikt:anarchism|anarchism]] and [[Star Trek: Voyager]] episodes",
     "Russian theorist anarchism and Star Trek: Voyager episodes"),
    # images are dropped whole, captions with nested links included (real snippets)
    ("[[File:Kropotkin2.jpg|thumb|right|upright|Russian theorist [[Peter Kropotkin]] (1842–1921), who was "
     "influential in the development of [[anarchist communism]]]]\nText after.", "Text after."),
    ("Before [[File: Autostrada Durrës-Morina-04.jpg|thumb|A1 Highway]] and "
     "[[Image:x.png|left|200px|caption {{small|s}} [[y|z]] [http://e.org e]]] after.", "Before and after."),
    # categories and interlanguage links vanish; a leading colon makes a visible link
    ("Text.\n[[Category:Anarchism| ]]\n[[be-x-old:Аграномія]]\n[[fr:Agronomie]]\n"
     "[[Category:Political culture]]", "Text."),
    ("See [[:Category:Anarchism|the category]].", "See the category."),
    # external links keep their label; a bare one is dropped
    ("according to [http://www.theanarchistlibrary.org/HTML/x.html Anarchism: its philosophy] and [http://x.org].",
     "according to Anarchism: its philosophy and."),
    # bold and italic quotes
    ("The '''constructive vote''' (in German: ''konstruktives Misstrauensvotum'') '''''both'''''",
     "The constructive vote (in German: konstruktives Misstrauensvotum) both"),
    ("four quotes: apostrophe and bold, l''''amour'''", "four quotes: apostrophe and bold, l'amour"),
    # refs (paired, named, self-closing, holding templates) and comments
    ("elected.<ref>{{Cite web|title = Basic Law|url = http://x}}</ref> Next<ref name=\"a\"/> one"
     "<ref name=a>x</ref>.", "elected. Next one."),
    ("archivedate= 14 December 2006<!--Added by DASHBot--> kept <!-- multi\nline --> too",
     "archivedate= 14 December 2006 kept too"),
    ("Unterminated <!-- comment hides the rest", "Unterminated"),
    # math: a lone variable stays, a formula goes
    ("the proportion <math>D</math> and <math>A =\\left ( \\frac{1329}{D} \\right ) ^2</math> here",
     "the proportion D and here"),
    ("<gallery>\nFile:a.jpg|A [[b]] caption\n</gallery>\nAfter.", "After."),
    ("<timeline>\nImageSize = width:800\n</timeline>Kept. <syntaxhighlight lang=c>int x;</syntaxhighlight>"
     "<score>\\relative c' { c }</score>", "Kept."),
    # nowiki keeps its text literally; other HTML tags are unwrapped
    ('followed by a "<nowiki>[</nowiki>" (left-bracket) and <nowiki>[[not a link]] \'\'x\'\'</nowiki>',
     'followed by a "[" (left-bracket) and [[not a link]] \'\'x\'\''),
    ("H<sub>2</sub>O, x<sup>2</sup>, <span style=\"color:red\">red</span>, <small>small</small><br/>next",
     "H2O, x2, red, small next"),
    # templates: dropped, nested and multi-line ones too, with their parentheses tidied away
    ("'''Autism''' ({{IPAc-en|ˈ|ɔː|t|ɪ|z|əm}}) is a {{citation needed|date=May 2015}} disorder",
     "Autism is a disorder"),
    ("Albedo ({{IPAc-en|æ|l|ˈ|b|iː|d|oʊ}}; {{respell|al|BEE|doh}}) or x", "Albedo or x"),
    ("Foo (, {{IPA|x}} born 1900; {{x}}) bar", "Foo (born 1900) bar"),
    ("{{Infobox person\n| name = {{nowrap|Alisa {{small|x}}}}\n| image = {{#if:{{{1|}}}|a|b}}\n}}\n"
     "'''Ayn Rand''' was a writer.", "Ayn Rand was a writer."),
    # the text-carrying templates are rendered
    ("the Greek {{lang|grc|ἀναρχία}}, {{lang-fr|Fou}} and {{transl|ar|ALA|al-asmā’}}",
     "the Greek ἀναρχία, Fou and al-asmā’"),
    ("At {{convert|1300|mi|km}}, with {{convert|52419|sqmi|km2|abbr=out|sp=us}} and {{convert|150|°C|°F}} "
     "and {{convert|200|to|350|mm|abbr=on}} or {{convert|5|-|7|C}}",
     "At 1300 mi, with 52419 sq mi and 150 °C and 200 to 350 mm or 5–7 °C"),
    ("{{nowrap|{{lang|fr|[[Paris|la ville]]}}}} is {{nowrap|160 cm}} tall", "la ville is 160 cm tall"),
    ("{{frac|1|2}} cup, {{as of|2010}}, {{nihongo|Tokyo|東京|Tōkyō}}",
     "1/2 cup, As of 2010, Tokyo (東京, Tōkyō)"),
    # tables, nested ones too
    ("Pre.\n{| class=\"wikitable\"\n|+ Sample albedos\n|-\n! Surface\n|-\n| Fresh asphalt || 0.04\n|-\n|\n"
     "{| class=inner\n| nested\n|}\n|}\nPost.", "Pre.\n\nPost."),
    # entities, including the double-escaped ones dumps hold
    ("AT&amp;T, 5&nbsp;km, 1&ndash;2, &amp;nbsp;x, a&lt;b", "AT&T, 5 km, 1–2, x, a<b"),
    ("__NOTOC__\n__TOC__Text.", "Text."),
    ("#REDIRECT [[Computer accessibility]] {{R from CamelCase}}", ""),
    ("stray }} and ]] and unclosed {{template and [[link", "stray and and unclosed template and link"),
])
def test_construct(wikitext: str, expected: str) -> None:
    assert clean(wikitext) == expected


def test_headings_lists_and_dropped_sections() -> None:
    text = ("Intro line one\nline two.\n==Germany== \n{{see also|Politics of Germany}}\nGovernments.\n"
            "=== History of use ===\nUsed twice.\n"
            ": '''Article 67.''' (1) The Bundestag.\n: (2) Forty-eight hours.\n"
            "* item [[one]]\n# numbered\n; term : definition\n----\nAfter rule.\n"
            "== See also ==\n* [[Motion of no confidence]]\n=== Sub of see also ===\nstill dropped\n"
            "== References ==\n{{reflist}}\n== Later ==\nKept.\n== External links ==\n* [http://x y]")
    assert wikitext_to_paragraphs(text) == [
        "Intro line one line two.", "Governments.", "Used twice.", "Article 67. (1) The Bundestag.",
        "(2) Forty-eight hours.", "item one", "numbered", "term : definition", "After rule.", "Kept."]


@pytest.fixture(scope="module")
def cleaned_dump() -> dict[str, list[str]]:
    pages = [*iter_pages(sample_path("enwiki")), *iter_pages(sample_path("enwiki_tables"))]
    return {page.title: wikitext_to_paragraphs(page.text) for page in pages
            if not page.redirect and page.ns == 0}


def test_whole_real_dump_is_free_of_markup(cleaned_dump: dict[str, list[str]]) -> None:
    assert len(cleaned_dump) == 110
    leftovers = ["{{", "}}", "[[", "]]", "{|", "|}", "<ref", "</ref", "&amp;", "&nbsp;", "thumb|", "()",
                 "( )", "__TOC__", "'''"]
    found = {(title, marker) for title, paragraphs in cleaned_dump.items() for paragraph in paragraphs
             for marker in leftovers if marker in paragraph}
    assert not found
    assert all(paragraph == paragraph.strip() and "  " not in paragraph
               for paragraphs in cleaned_dump.values() for paragraph in paragraphs)


def test_real_articles_read_as_prose(cleaned_dump: dict[str, list[str]]) -> None:
    anarchism = cleaned_dump["Anarchism"]
    assert anarchism[0].startswith("Anarchism is a political philosophy that advocates self-governed "
                                   "societies based on voluntary institutions.")
    assert not any(p.startswith(("Anarchism Portal", "Anarchism at")) for p in anarchism)  # External links
    confidence = cleaned_dump["Constructive vote of no confidence"]
    assert confidence[0].startswith("The constructive vote of no confidence (in German: konstruktives "
                                    "Misstrauensvotum, in Spanish: moción de censura constructiva) is a")
    assert "Article 67. (1) The Bundestag can express its lack of confidence" in confidence[4]
    assert sum(len(p) for ps in cleaned_dump.values() for p in ps) > 2_500_000
