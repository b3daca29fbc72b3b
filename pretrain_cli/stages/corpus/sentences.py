"""Split English prose into sentences, fast and without models or downloads.

    >>> split_sentences('Dr. J. R. R. Tolkien was born in 1892. He said "Go." Then he left.')
    ['Dr. J. R. R. Tolkien was born in 1892.', 'He said "Go."', 'Then he left.']

A sentence ends at ".", "!", "?" or an ellipsis, plus any closing quotes or brackets, followed by
whitespace and a word that starts like a sentence: an upper-case letter or a digit, possibly after
an opening quote or bracket. So "e.g. the" and "3.14" never split. A full stop does not end a
sentence after a title or other abbreviation (Mr., St., e.g., vs., Jan.), after a single capital
initial (J. R. R. Tolkien), after an acronym (U.S.), nor between "No." and a number (No. 5).
"""

from __future__ import annotations

import re

# Abbreviations that do not end a sentence even before a capitalised word ("Dr. Smith", "e.g. Paris").
_ABBREVIATIONS = frozenset("""
    mr mrs ms messrs dr prof st mt ft sr rev fr gen col lt capt cmdr sgt maj adm gov sen rep pres hon
    e.g i.e cf vs viz al approx ca est dept univ assn bros
    jan feb mar apr jun jul aug sep sept oct nov dec
""".split())
# Abbreviations that can end a sentence, but not when a number follows: "No. 5", "p. 12",
# "Robert Lucas Jr. (1995)", while "No. That is wrong." and "… by Apple Inc. It …" do split.
_BEFORE_NUMBER = frozenset("no nos p pp vol vols fig figs ch chap sec art op nr c jr inc ltd co corp".split())

# The look-behind starts a match only at the first of a run of stops, keeping "......" linear.
_END = re.compile(r"(?<![.!?])(?:[.!?]+|…)[\"'”’»)\]]*\s+")
_OPENERS = "\"'“‘«(["
_ACRONYM = re.compile(r"(?:[A-Z]\.)+[A-Z]")


def split_sentences(text: str) -> list[str]:
    """The sentences of one paragraph, stripped; [] for blank text."""
    sentences: list[str] = []
    start = 0
    for match in _END.finditer(text):
        if _is_boundary(text, start, match):
            sentence = text[start:match.end()].strip()
            if sentence:
                sentences.append(sentence)
            start = match.end()
    rest = text[start:].strip()
    if rest:
        sentences.append(rest)
    return sentences


def _is_boundary(text: str, start: int, match: re.Match[str]) -> bool:
    following = text[match.end():match.end() + 4].lstrip(_OPENERS)[:1]
    if not (following.isupper() or following.isdigit()):
        return False
    if text[match.start()] != "." or text.startswith("..", match.start()):
        return True
    # Only the last word matters, and no abbreviation is long: a bounded look-back keeps this linear.
    words = text[max(start, match.start() - 32):match.start()].rsplit(None, 2)
    word = words[-1].lstrip(_OPENERS) if words else ""
    lower = word.lower()
    if lower in _ABBREVIATIONS:
        return False
    if lower in _BEFORE_NUMBER and following.isdigit():
        return False
    # "J. R. R. Tolkien", "U.S. Army": initials and acronyms are followed by more of the name;
    # but in "0 K. By definition" the capital after a number is a unit that ends the sentence.
    after_number = len(words) > 1 and words[-2][-1:].isdigit()
    initial = len(word) == 1 and word.isupper() and not after_number
    return not (initial or _ACRONYM.fullmatch(word))
