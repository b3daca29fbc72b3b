"""Wikitext to the plain-text paragraphs a reader sees in the article body.

    >>> wikitext_to_paragraphs("'''Paris''' is the [[capital city|capital]] of [[France]].<ref>x</ref>")
    ['Paris is the capital of France.']
    >>> wikitext_to_paragraphs("It is {{convert|10|km|abbr=on}} long.{{citation needed}}", DEFAULT_POLICY)
    ['It is 10 km (6.2 mi) long.']

Markup is removed in MediaWiki's own order: comments and tags first (refs, math, nowiki …), then
templates, tables, external and internal links, quotes and HTML, and last the line structure:
headings end a paragraph and are not emitted, list items become paragraphs of their own, and
reference-like sections (References, External links, See also …) are dropped whole. Nested
constructs ({{…}}, [[…]], {|…|}) are reduced by a bracket stack in one pass, so a pathological page
cannot make cleaning quadratic. Templates follow a TemplatePolicy (templates.py): those that carry
running text ({{lang}}, {{convert}}, {{nowrap}} …) are rendered, every other one is dropped, and the
"()" or "(; " a dropped one leaves behind is tidied away. `is_disambiguation` tells disambiguation
pages apart, so that a caller can drop and count them.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable

from pretrain_cli.stages.corpus.templates import (
    DEFAULT_POLICY,
    TemplateCall,
    TemplatePolicy,
    normalise_name,
)

# Sections that hold citations and links rather than prose.
DROPPED_SECTIONS = frozenset({
    "references", "external links", "see also", "further reading", "notes", "bibliography", "sources",
    "footnotes", "citations", "works cited", "notes and references", "references and notes",
})

_REDIRECT = re.compile(r"\s*#redirect\b", re.IGNORECASE)
# An unterminated comment hides the rest of the page, as it does in MediaWiki.
_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.DOTALL)
# {{Disambiguation}}, {{dab}}, {{Hndis}}, {{geodis}}, {{Letter disambiguation}} …: a name that ends in
# one of these (first letter in either case, as MediaWiki reads it). Written so a page is scanned
# at the speed of a search for "{{".
_DISAMBIGUATION = re.compile(r"\{\{[\w ,':-]{0,60}"
                             r"(?:[Dd]isambig(?:uation)?|DISAMBIG|[Dd]isamb|[Dd]ab|DAB|[Dd]big|[Dd]is)\s*(?:\||\}\})")

# --- tags whose content is kept verbatim, dropped, or unwrapped ---------------------------------
_LITERAL_TAGS = ("nowiki", "pre")
_DROPPED_TAGS = ("ref", "references", "math", "gallery", "timeline", "syntaxhighlight", "source", "score",
                 "graph", "mapframe", "maplink", "templatedata", "imagemap", "hiero", "inputbox",
                 "categorytree", "includeonly", "table")
_ELEMENT = re.compile(rf"<({'|'.join(_LITERAL_TAGS + _DROPPED_TAGS)})\b([^>]*)>", re.IGNORECASE)
_CLOSING = {name: re.compile(rf"</{name}\s*>", re.IGNORECASE) for name in _LITERAL_TAGS + _DROPPED_TAGS}
# <math>x</math> is a variable in running text ("where x is …"); keep it, drop real formulas.
_SIMPLE_MATH = re.compile(r"[\w.,+\-=/() ]{1,20}")
# Inside <nowiki>, markup characters are swapped for private-use code points until the very end.
_MARKUP_CHARS = "[]{}|'<>=*#:;_"
_PROTECT = str.maketrans({c: chr(0xE000 + i) for i, c in enumerate(_MARKUP_CHARS)})
_UNPROTECT = str.maketrans({chr(0xE000 + i): c for i, c in enumerate(_MARKUP_CHARS)})
_PROTECTED = re.compile(f"[{chr(0xE000)}-{chr(0xE000 + len(_MARKUP_CHARS) - 1)}]")

_BLOCK_TAGS = ("p", "div", "center", "blockquote", "poem", "li", "ul", "ol", "dl", "dt", "dd", "hr",
               "h1", "h2", "h3", "h4", "h5", "h6", "caption")
_INLINE_TAGS = ("span", "small", "big", "sub", "sup", "s", "u", "b", "i", "em", "strong", "code", "tt",
                "var", "kbd", "samp", "abbr", "cite", "q", "del", "ins", "strike", "font", "mark", "bdi",
                "bdo", "ruby", "rb", "rt", "rp", "ce", "chem", "wbr", "onlyinclude", "noinclude",
                "section", "templatestyles", "indicator")
# Stray halves of the tags above (an unmatched </ref>, a lone <nowiki>) are stripped here too.
_ALL_TAGS = ("br",) + _BLOCK_TAGS + _INLINE_TAGS + _LITERAL_TAGS + _DROPPED_TAGS
_HTML_TAG = re.compile(rf"</?({'|'.join(_ALL_TAGS)})\b[^<>]*>", re.IGNORECASE)
_BLOCK = frozenset(_BLOCK_TAGS)

# --- templates -----------------------------------------------------------------------------------
_TEMPLATE_TOKEN = re.compile(r"\{\{|\}\}")
_ARG_TOKEN = re.compile(r"\[\[|\]\]|\|")
# "name = value": the name ends at the first "=" and holds no markup, so "<span style=…>" is a value.
# One character class and no nested quantifier: a long run of spaces cannot make it backtrack.
_NAMED_ARG = re.compile(r"[^=\[\]{}<>]*=")
# Deeper nests are dropped: no real page needs them, and the bound keeps the text each level of
# rendered templates copies linear in the page.
_MAX_DEPTH = 40

# --- links, quotes, magic words ------------------------------------------------------------------
_LINK_TOKEN = re.compile(r"\[\[|\]\]")
_NAMESPACE = re.compile(r"[A-Za-z][A-Za-z -]*")
_HIDDEN_NAMESPACES = frozenset({"file", "image", "media", "category"})
_PIPE_TRICK = re.compile(r"\s*\([^()]*\)\s*$|,.*$")
# Labels are bounded so that a "[http://…" that never closes costs O(1) backtracking, not O(line).
_EXTERNAL_LINK = re.compile(r"\[(?:https?:|ftp:|mailto:|news:|irc:|//)[^\s\[\]]*(?:\s+([^\]\n]{0,300}))?\]",
                            re.IGNORECASE)
_QUOTES = re.compile(r"''+")
_MAGIC_WORD = re.compile(r"__[A-Z]+__")
_HEADING = re.compile(r"(={1,6})(.+?)(={1,6})")

# --- tidying a finished paragraph ----------------------------------------------------------------
_ODD_SPACE = re.compile("[\t\xa0\u2002\u2003\u2009\u200a\u202f]")  # no-break, thin, en and em spaces
_INVISIBLE = re.compile("[\u00ad\u200b\u200e\u200f]")  # soft hyphen, zero-width space, direction marks
# Each rule can only start where its first character is, so a long run of spaces or commas stays linear.
_ORPHANS = (
    (re.compile(r" {2,}"), " "),
    (re.compile(r"\( ?(?:[,;:–—-] ?)*\)"), ""),     # "()", "(; )", "(–)": a dropped template's brackets
    (re.compile(r"\[ ?\]"), ""),                     # "[]" around a dropped footnote template
    (re.compile(r" +([,.;!?)])"), r"\1"),           # "word ," where a template or a ref was
    (re.compile(r"\( +"), "("),
    (re.compile(r"\([,;:]+ *"), "("),               # "(, born 1900)"
    (re.compile(r"(?<![,;])[,;]+\)"), ")"),         # "(born 1900;)"
    (re.compile(r"([,;:])[,;]+"), r"\1"),           # "Paris,, France", "Greek:, Apollōn"
    (re.compile(r"^[ ,;.:]+", re.MULTILINE), ""),
    (re.compile(r" {2,}"), " "),
)
_WORD = re.compile(r"\w")


def wikitext_to_paragraphs(text: str, policy: TemplatePolicy = DEFAULT_POLICY) -> list[str]:
    """The clean paragraphs of one page's wikitext, templates rendered by `policy`; [] for a redirect."""
    if _REDIRECT.match(text):
        return []
    text = _COMMENT.sub("", text)
    text = _replace_elements(text)
    text = _reduce_templates(text, policy)
    text = _drop_tables(text)
    text = _EXTERNAL_LINK.sub(lambda m: m.group(1) or "", text)
    text = _reduce_nested(text, _LINK_TOKEN, "[[", _render_link)
    text = _QUOTES.sub(_quote_run, text)
    text = _HTML_TAG.sub(_html_tag, text)
    text = _MAGIC_WORD.sub("", text)
    return _tidy(_paragraphs(text))


def is_disambiguation(text: str, title: str) -> bool:
    """Whether a page is a disambiguation page: a list of links to articles, not an article."""
    return (title.rstrip().endswith("(disambiguation)") or "__DISAMBIG__" in text
            or _DISAMBIGUATION.search(text) is not None)


def _replace_elements(text: str) -> str:
    """Keep <nowiki>/<pre> content verbatim, drop <ref>, <math>, <gallery> … with their content."""
    out: list[str] = []
    pos = 0
    never_closed: set[str] = set()  # remembered so a page of unclosed <ref>s stays linear
    while match := _ELEMENT.search(text, pos):
        out.append(text[pos:match.start()])
        pos = match.end()
        name = match.group(1).lower()
        if match.group(2).endswith("/") or name in never_closed:
            continue
        closing = _CLOSING[name].search(text, pos)
        if closing is None:
            never_closed.add(name)
            continue
        inside = text[pos:closing.start()]
        pos = closing.end()
        if name in _LITERAL_TAGS:
            out.append(inside.translate(_PROTECT))
        elif name == "math" and _SIMPLE_MATH.fullmatch(inside.strip("{} ")):
            out.append(inside.strip("{} "))
    out.append(text[pos:])
    return "".join(out)


class _Rendered(str):
    """Text a template produced: to the template around it, its "|" and "=" are text, not markup."""

    __slots__ = ()


def _reduce_templates(text: str, policy: TemplatePolicy) -> str:
    """Replace each {{…}}, innermost first, with what the policy renders for it ("" when it has no rule).

    A frame is kept as its pieces, raw text and rendered text apart, because MediaWiki splits a
    template's arguments before the templates inside them expand: {{lang|fr|a{{!}}b}} has two
    arguments, not three. An unmatched "}}" is dropped and a "{{" that never closes keeps its inside.
    """
    if "{{" not in text and "}}" not in text:
        return text
    stack: list[list[str]] = [[]]
    pos = 0
    for match in _TEMPLATE_TOKEN.finditer(text):
        stack[-1].append(text[pos:match.start()])
        pos = match.end()
        if match.group() == "{{":
            stack.append([])
        elif len(stack) > 1:
            pieces = stack.pop()
            rendered = _render_template(pieces, policy) if len(stack) <= _MAX_DEPTH else ""
            if rendered:
                stack[-1].append(_Rendered(rendered))
    stack[-1].append(text[pos:])
    return "".join(piece for frame in stack for piece in frame)


def _render_template(pieces: list[str], policy: TemplatePolicy) -> str:
    # pieces alternate raw text (pieces[0] always) and rendered text; the name is in pieces[0].
    raw_name = pieces[0].partition("|")[0]
    rule = policy.rule_for(raw_name)
    if rule is None:
        return ""
    try:
        return rule.render(_template_call(normalise_name(raw_name), pieces))
    except (ValueError, ArithmeticError):
        # Arguments no editor meant (a 5,000-digit year, 10^400 miles) drop the template; one odd
        # page must never stop a dump.
        return ""


def _template_call(name: str, pieces: list[str]) -> TemplateCall:
    """Split a template's pieces into positional and named arguments at its own "|"s: not those of
    [[target|label]] links, nor those that inner templates rendered."""
    args: list[list[str]] = [[]]
    depth = 0  # of [[ ]] around the current position
    for piece in pieces:
        if type(piece) is _Rendered:
            args[-1].append(piece)
            continue
        start = 0
        for match in _ARG_TOKEN.finditer(piece):
            token = match.group()
            if token == "[[":
                depth += 1
            elif token == "]]":
                depth = max(depth - 1, 0)
            elif depth == 0:
                args[-1].append(piece[start:match.start()])
                args.append([])
                start = match.end()
        args[-1].append(piece[start:])
    positional: list[str] = []
    named: dict[str, str] = {}
    for parts in args[1:]:
        value = "".join(parts)
        # parts[0] is raw text, so a name made by an inner template stays part of a positional value.
        match = _NAMED_ARG.match(parts[0])
        if match is None:
            positional.append(value.strip())
        else:
            named[match.group()[:-1].strip()] = value[match.end():].strip()
    # "2=text" fills the second positional argument, as MediaWiki numbers them.
    for key in [key for key in named if key.isdigit() and 0 < int(key) <= 50]:
        n = int(key)
        positional.extend([""] * (n - len(positional)))
        positional[n - 1] = named.pop(key)
    return TemplateCall(name, tuple(positional), named)


def _reduce_nested(text: str, tokens: re.Pattern[str], opening: str, render: Callable[[str], str]) -> str:
    """Replace each balanced `opening … closing` span, innermost first, with `render(inside)`.

    A closer with no opener is dropped and an opener that never closes keeps its inside text, so
    no half of the markup survives either way.
    """
    if tokens.search(text) is None:
        return text
    stack: list[list[str]] = [[]]
    pos = 0
    for match in tokens.finditer(text):
        stack[-1].append(text[pos:match.start()])
        pos = match.end()
        if match.group() == opening:
            stack.append([])
        elif len(stack) > 1:
            inside = "".join(stack.pop())
            stack[-1].append(render(inside) if len(stack) <= _MAX_DEPTH else "")
    stack[-1].append(text[pos:])
    # Unclosed openers vanish and their frames simply follow their parents' text.
    return "".join(piece for frame in stack for piece in frame)


def _drop_tables(text: str) -> str:
    """Drop {| … |} tables (nested ones too): their cells are data, not running prose."""
    if "{|" not in text:
        return text
    out: list[str] = []
    depth = 0
    for line in text.split("\n"):
        head = line.lstrip(" :")
        if head.startswith("{|"):
            depth += 1
        elif depth and head.startswith("|}"):
            depth -= 1
            if depth == 0:
                out.append("")  # a table between two paragraphs still separates them
            continue
        if depth == 0:
            out.append(line)
    return "\n".join(out)


def _render_link(inside: str) -> str:
    target, pipe, label = inside.partition("|")
    target = target.strip()
    # [[:Category:X]] is a visible link to the category, where [[Category:X]] files the page in it.
    shown = target.startswith(":")
    target = target.lstrip(": ")
    prefix, colon, rest = target.partition(":")
    if colon and not shown and prefix.strip().lower() in _HIDDEN_NAMESPACES:
        return ""  # images (their captions nest links) and categories
    # "Star Trek: Voyager" is an article title; "wikt:foo" and "de:Paris" are namespaced.
    namespaced = bool(colon) and rest[:1] not in ("", " ") and bool(_NAMESPACE.fullmatch(prefix))
    if namespaced and not shown and not pipe:
        return ""  # interlanguage [[de:Paris]] and interwiki [[wikt:foo]] links
    if pipe:
        label = label.strip()
        # The pipe trick: [[Mercury (planet)|]] shows "Mercury", [[Paris, Texas|]] shows "Paris".
        return label or _PIPE_TRICK.sub("", rest if namespaced else target)
    page, _, anchor = target.partition("#")
    return (page or anchor).replace("_", " ")


def _quote_run(match: re.Match[str]) -> str:
    # '' italic, ''' bold, ''''' both; a run of four is an apostrophe followed by bold.
    n = len(match.group())
    return "'" if n == 4 else "'" * max(n - 5, 0)


def _html_tag(match: re.Match[str]) -> str:
    name = match.group(1).lower()
    if name == "br":
        return " "
    return "\n\n" if name in _BLOCK else ""


def _paragraphs(text: str) -> list[str]:
    """Raw paragraphs: lines joined up to a blank line, heading or list item; dropped sections skipped."""
    paragraphs: list[str] = []
    lines: list[str] = []
    dropping_level = 0  # >0 while inside a dropped section of that heading level

    def flush() -> None:
        if lines:
            paragraphs.append(" ".join(lines))
            lines.clear()

    for line in text.split("\n"):
        stripped = line.strip()
        heading = _HEADING.fullmatch(stripped)
        if heading:
            flush()
            level = min(len(heading.group(1)), len(heading.group(3)))
            if dropping_level and level > dropping_level:
                continue
            title = heading.group(2).translate(_UNPROTECT).strip(" :").lower()
            dropping_level = level if title in DROPPED_SECTIONS else 0
        elif dropping_level:
            continue
        elif not stripped or stripped.startswith("----"):
            flush()
        elif stripped[0] in "*#:;":
            flush()
            paragraphs.append(stripped.lstrip("*#:; "))
        else:
            lines.append(stripped)
    flush()
    return paragraphs


def _tidy(paragraphs: list[str]) -> list[str]:
    # One pass over the whole page is several times faster than one per paragraph, and safe
    # because no paragraph holds a "\n" and no tidying rule crosses one.
    text = "\n".join(paragraphs)
    if _PROTECTED.search(text):
        text = text.translate(_UNPROTECT)
    if "&" in text:
        # Dumps hold some entities escaped twice ("&amp;nbsp;"): the XML layer undid only one level.
        text = html.unescape(html.unescape(text))
    text = _INVISIBLE.sub("", _ODD_SPACE.sub(" ", text))
    for pattern, replacement in _ORPHANS:
        text = pattern.sub(replacement, text)
    return [paragraph.strip() for paragraph in text.split("\n") if _WORD.search(paragraph)]
