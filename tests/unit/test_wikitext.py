"""Wikitext cleaning, construct by construct on snippets from the real dump, then on the whole dump."""

from __future__ import annotations

import time

import pytest

from pretrain_cli.samples import sample_path
from pretrain_cli.stages.corpus.mediawiki import Page, iter_pages
from pretrain_cli.stages.corpus.templates import DEFAULT_POLICY, TemplatePolicy
from pretrain_cli.stages.corpus.wikitext import is_disambiguation, wikitext_to_paragraphs


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
     "Autism (/ˈɔːtɪzəm/) is a disorder"),
    ("Foo (, {{efn|x}} born 1900; {{x}}) bar", "Foo (born 1900) bar"),
    ("a pig{{sfn|Barnes|1995|p=9}}, a cow{{rp|xxi}} ({{cn}}) and ({{citation needed}}, {{efn|x}})",
     "a pig, a cow and"),
    ("{{Infobox person\n| name = {{nowrap|Alisa {{small|x}}}}\n| image = {{#if:{{{1|}}}|a|b}}\n}}\n"
     "'''Ayn Rand''' was a writer.", "Ayn Rand was a writer."),
    # the text-carrying templates are rendered
    ("the Greek {{lang|grc|ἀναρχία}}, {{lang-fr|Fou}} and {{transl|ar|ALA|al-asmā’}}",
     "the Greek ἀναρχία, French: Fou and al-asmā’"),
    ("At {{convert|1300|mi|km}}, with {{convert|52419|sqmi|km2|abbr=out|sp=us}} and {{convert|150|°C|°F}} "
     "and {{convert|200|to|350|mm|abbr=on}} or {{convert|5|-|7|C}}",
     "At 1,300 mi (2,100 km), with 52,419 square miles (135,760 km²) and 150 °C (302 °F) and 200 to "
     "350 mm (7.9 to 13.8 in) or 5–7 °C (41–45 °F)"),
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


def test_arguments_split_as_mediawiki_splits_them() -> None:
    policy = TemplatePolicy({"lang": "arg 2", "!": "literal |", "=": "literal =", "quote": "quote",
                             "nowrap": "first"})
    # A "|" or "=" an inner template produced is text, not an argument separator or a name.
    assert wikitext_to_paragraphs("{{lang|fr|a{{!}}b}} {{lang|fr|x {{=}} y}}", policy) == ["a|b x = y"]
    # name=value is named, 2=value is the second positional argument, a [[link|label]] pipe is the link's.
    assert wikitext_to_paragraphs("{{lang|fr|2=E = mc2}} {{lang|fr|[[Paris|la ville]]|italic=no}}",
                                  policy) == ["E = mc2 la ville"]
    assert wikitext_to_paragraphs("{{quote|text=Jazz is not dead|author=Zappa}}", policy) == [
        "Jazz is not dead"]
    assert wikitext_to_paragraphs("{{nowrap|{{lang|fr|{{nowrap|deep}}}}}}", policy) == ["deep"]


def test_policy_decides_what_is_rendered_and_orphans_are_tidied() -> None:
    # The real Albedo and Apollo leads, with pronunciation and language templates dropped by the user:
    # what WikiExtractor leaves as "Albedo (; )" or "Apollōn ()" is tidied away.
    quiet = DEFAULT_POLICY.updated({"ipac-*": "drop", "respell": "drop", "lang": "drop", "small": "drop"})
    albedo = "'''Albedo''' ({{IPAc-en|æ|l|ˈ|b|iː|d|oʊ}}; {{respell|al|BEE|doh}}) is the reflectivity"
    assert wikitext_to_paragraphs(albedo) == ["Albedo (/ælˈbiːdoʊ/; al-BEE-doh) is the reflectivity"]
    assert wikitext_to_paragraphs(albedo, quiet) == ["Albedo is the reflectivity"]
    apollo = ("'''Apollo''' ([[Homeric Greek]]: {{lang|grc|Ἀπόλλων}}, ''Apollōn'' "
              "({{small|[[Genitive|GEN]]}} {{lang|grc|Ἀπόλλωνος}}); {{lang-la|Apollō}}) is one of the")
    assert wikitext_to_paragraphs(apollo) == [
        "Apollo (Homeric Greek: Ἀπόλλων, Apollōn (GEN Ἀπόλλωνος); Latin: Apollō) is one of the"]
    assert wikitext_to_paragraphs(apollo, quiet) == [
        "Apollo (Homeric Greek: Apollōn; Latin: Apollō) is one of the"]
    assert wikitext_to_paragraphs("Apollo ({{IPAc-en|ə|ˈ|p|ɒ|l|oʊ}}; born …)", quiet) == ["Apollo (born …)"]


@pytest.fixture(scope="module")
def real_pages() -> list[Page]:
    """The articles of both real samples (redirects and other namespaces left out)."""
    pages = [*iter_pages(sample_path("enwiki")), *iter_pages(sample_path("enwiki_tables"))]
    return [page for page in pages if not page.redirect and page.ns == 0]


def test_disambiguation_pages(real_pages: list[Page]) -> None:
    found = {page.title for page in real_pages if is_disambiguation(page.text, page.title)}
    assert found == {"Alien", "Austin (disambiguation)", "Ada", "Aberdeen (disambiguation)",
                     "Argument (disambiguation)", "Animal (disambiguation)", "Asia Minor (disambiguation)",
                     "Aa River"}  # {{disambiguation}}, {{Disambiguation|geo|hndis}}, {{geodis}} …
    for text in ("{{dab}}", "{{Hndis|Smith, John}}", "{{Letter disambiguation}}", "{{ Disambig }}",
                 "{{Template:Dab}}", "x\n__DISAMBIG__"):
        assert is_disambiguation(text, "X")
    assert is_disambiguation("", "Mercury (disambiguation)")
    for text in ("{{Disambiguation needed|date=May 2015}}", "{{About|the city|Paris (disambiguation)}}",
                 "{{Distinguish|Dis}}", "{{Infobox disease}}", "[[Category:Disambiguation pages]]"):
        assert not is_disambiguation(text, "X")


@pytest.mark.parametrize("text", [
    "{{" * 50_000, "}}" * 50_000, "[[" * 50_000, "{{nowrap|" * 20_000 + "x" * 100_000 + "}}" * 20_000,
    "{{lang|fr|" * 20_000 + "}}" * 20_000, "<ref>" * 50_000, "<!--" * 50_000, "[http://x " * 20_000,
    "(" * 100_000, "( , " * 50_000, " ," * 100_000, "{{convert|1|" + "|to|1" * 20_000 + "|km}}",
    "{{hlist" + "|[[a|b]]" * 30_000 + "}}", "{|\n" * 50_000, "'''" * 50_000,
    "{{lang|fr|" + " " * 100_000 + "x}}", "{{lang|fr|" + "\n" * 100_000 + "}}",
])
def test_pathological_input_stays_linear(text: str) -> None:
    # A guard, not a benchmark: linear time is tens of milliseconds; quadratic would be minutes.
    started = time.perf_counter()
    wikitext_to_paragraphs(text)
    is_disambiguation(text, "X")
    assert time.perf_counter() - started < 2.0


@pytest.fixture(scope="module")
def cleaned_dump(real_pages: list[Page]) -> dict[str, list[str]]:
    return {page.title: wikitext_to_paragraphs(page.text) for page in real_pages}


def test_whole_real_dump_is_free_of_markup(cleaned_dump: dict[str, list[str]]) -> None:
    assert len(cleaned_dump) == 110
    # What the corpus benchmark counts (markup, and orphans a dropped template leaves), and more.
    leftovers = ["{{", "}}", "[[", "]]", "{|", "|}", "<ref", "&amp;", "&lt;", "thumb|", "px|",
                 "()", "( )", "(, ", "(; ", "</ref", "&nbsp;", "__TOC__", "'''"]
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
