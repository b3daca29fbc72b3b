"""Split a paragraph into sentences, fast and without models or downloads, by the document's language.

    >>> split_sentences('Dr. J. R. R. Tolkien was born in 1892. He said "Go." Then he left.')
    ['Dr. J. R. R. Tolkien was born in 1892.', 'He said "Go."', 'Then he left.']
    >>> split_sentences("“今年增长３．５％。”他说。真的吗？！", lang="zh")
    ['“今年增长３．５％。”', '他说。', '真的吗？！']

Chinese and Japanese ("zh", "ja", and Cantonese, Wu and Classical Chinese) get the CJK rules;
every other language, and "" for unknown, the English rules.

English rules. A sentence ends at ".", "!", "?" or an ellipsis (or the danda, Arabic question mark,
Urdu, Armenian and Ethiopic full stops), plus any closing quotes or brackets, followed by whitespace
and a word that is not lower case, possibly after an opening quote or bracket. So "e.g. the" and
"3.14" never split. A full stop does not end a sentence after a title (Mr., St., Gen.) or a Latin
abbreviation (e.g., cf., vs.), nor before a number after "No.", "p.", "Jr.", "a.m." and the like
(No. 5, 9 a.m. 365 days a year), nor after a list number that opens the sentence ("1. First").
After an initial, an acronym, a month or "et al." (J. R. R. Tolkien, U.S. Army, Jan. 5) it ends a
sentence only when a word that opens sentences but never names follows ("in Washington, D.C. The
city"), and never before a time zone after "a.m."/"p.m." (9:32 a.m. EDT).

CJK rules. A sentence ends at 。！？!? or an ellipsis (…, ……, ⋯, ......), plus any closing
quotes or brackets; no space is needed after it, and a run of stops ("？！", "……。") stays
together. It does not end when a comma, colon, semicolon, dash, lower-case letter or the end of
a title follows (“好！”，他说; 《如此美容美发店！》披露了), nor at a closing quote that a
particle binds into the sentence (“……”的规定, 「……。」と言った). A quotation that ends in a
stop ends its sentence, so “……。”他说，…… splits after the quote. That is how People's Daily
writes: a quoted sentence keeps its stop inside the quotes, and the narration after it is new
text (“……背道而驰的。”他说，要不是……); telling a bare attribution ("他说。") from a new
sentence would need a parser. The full-width "．" is a decimal point (３．５亿), not a stop, and
an ASCII "." follows the English rules, so Latin text inside a Chinese paragraph splits like
English, and also where a CJK character follows it directly.
"""

from __future__ import annotations

import functools
import re

# Only the characters that write sentences without spaces between them need other rules. Latin,
# Cyrillic and Greek, and the caseless scripts written with spaces (Korean, Arabic, Hindi), all mark
# a sentence end by a stop, a space and a word that is not lower case: the very signal the English
# rules read, so they are the default. Only their abbreviation lists are English.
_CJK_LANGUAGES = frozenset({"zh", "ja", "yue", "wuu", "lzh"})

_CLOSERS = "\"'”’»)\\]}」』）】〕］｝"
_OPENERS = "\"'“‘«([{"
_STOPS = ".!?…؟۔।॥։።"
_CJK_STOPS = "。！？!?…⋯."
# A match starts at a stop whose previous character is not a stop, so a run of stops ("......") is
# one match, which keeps the scan linear; leading with the stop rather than the look-behind also
# lets the engine skip straight to the next stop, which makes the scan four times faster.
_END = re.compile(rf"[{_STOPS}](?<![{_STOPS}]{{2}})[{_STOPS}]*[{_CLOSERS}]*\s+")
# A CJK stop needs no space after it; the stops and the space after them are told apart in Python.
_CJK_END = re.compile(rf"(?P<stops>[{_CJK_STOPS}](?<![{_CJK_STOPS}]{{2}})[{_CJK_STOPS}]*)[{_CLOSERS}]*\s*")
_CJK_CHAR = re.compile(r"[\u3040-\u30ff\u3400-\u9fff]")
# A stop inside a title (《回家！》是一本书) leaves the sentence going: the title marks are not closers.
_CONTINUATIONS = "，、；：,;:—》〉"
# A particle right after a closing quote makes the quotation part of the sentence: Chinese 的
# (“……”的规定), Japanese と and って (「……」と言った).
_QUOTE_PARTICLES = "的とっ"

# Abbreviations after which a capitalised word is a name or a term, never a new sentence.
_TITLES = frozenset("""
    Mr Mrs Ms Messrs Dr Prof St Mt Ft Rev Fr Gen Col Lt Capt Cmdr Sgt Maj Adm Brig Bvt Cpl Pvt Lieut
    Gov Sen Rep Pres Hon Supt Dept Univ Assn
""".split())  # matched as written: "Ft. Sumter" is a fort, "2413 ft. Alabama" ends a sentence
_ABBREVIATIONS = frozenset("e.g i.e cf vs viz approx ca est incl esp resp subg subsp ssp var".split())
# Abbreviations that can end a sentence, but not when a number follows: "No. 5", "p. 12",
# "Robert Lucas Jr. (1995)", "(7th Cir. 2007)", while "No. That is wrong." and "… by Apple Inc. It …"
# do split.
_BEFORE_NUMBER = frozenset("""
    no nos p pp vol vols fig figs ch chap sec art op nr c fl ed eds cir rs rp jr sr inc ltd co corp
""".split())
# Like initials, these continue before a name ("Jan. Smith", "Warner Bros. Cartoons") or a number
# ("Jan. 5") but end before a sentence opener ("on 5 Jan. The next day").
_NAME_PARTS = frozenset("al bros jan feb mar apr jun jul aug sep sept oct nov dec".split())
# Frequent sentence openers in English Wikipedia that are never part of a name. "A" and "I" are
# left out: they are initials too.
_OPENER_WORDS = frozenset("""
    The This That These Those There It Its He His She Her They Their We Our In On At As For By From To
    Of With After Before During When While Since Although Though Because If Unlike Despite Among
    Between Within Through However Thus Hence Therefore Moreover Furthermore Meanwhile Nevertheless
    Instead Also Even Only Then Today Later Some Most Many Several Both Each All Other Another Such
    What Who Why How Where An But And Yet So
""".split())
_ACRONYM = re.compile(r"(?:[A-Z]\.)+[A-Z]")
_TIME_ZONE = re.compile(r"[A-Z]{2,4}\b")
_LIST_NUMBER = re.compile(rf"[{_OPENERS}]*\d{{1,2}}")
_LEADING_WORD = re.compile(r"\w*")


def split_sentences(text: str, lang: str = "en") -> list[str]:
    """The sentences of one paragraph, stripped; [] for blank text. `lang`: ISO 639-1, "" if unknown."""
    cjk = _uses_cjk_rules(lang)
    sentences: list[str] = []
    start = 0
    for match in (_CJK_END if cjk else _END).finditer(text):
        if _is_cjk_boundary(text, start, match) if cjk else _is_boundary(text, start, match):
            sentence = text[start:match.end()].strip()
            if sentence:
                sentences.append(sentence)
            start = match.end()
    rest = text[start:].strip()
    if rest:
        sentences.append(rest)
    return sentences


@functools.cache
def _uses_cjk_rules(lang: str) -> bool:
    return lang.lower().replace("_", "-").partition("-")[0] in _CJK_LANGUAGES  # "zh-Hant" is Chinese


def _is_cjk_boundary(text: str, start: int, match: re.Match[str]) -> bool:
    stops = match["stops"]
    if len(stops) < 3 and not stops.strip("."):
        # One or two ASCII dots: an English full stop, where a space or a CJK character follows.
        # "3.5亿" and "www.example.com" have neither.
        spaced = match.end() > match.end("stops") and text[match.end() - 1].isspace()
        if not (spaced or _CJK_CHAR.match(text, match.end())):
            return False
        # The English rules read the last word, and Chinese has no spaces to end one: start after
        # the last CJK character, so "美国U.S.政府" reads "U.S.", an acronym.
        look_back = max(start, match.start() - 32)
        latin = max((c.end() for c in _CJK_CHAR.finditer(text, look_back, match.start())), default=look_back)
        return _is_boundary(text, max(start, latin), match)
    following = text[match.end():match.end() + 1]  # the match took the spaces after the stops
    if following in _CONTINUATIONS or following.islower():
        return False
    return not (following in _QUOTE_PARTICLES and match.group().rstrip()[-1] in _CLOSERS)


def _is_boundary(text: str, start: int, match: re.Match[str]) -> bool:
    ahead = text[match.end():match.end() + 16].lstrip(_OPENERS)
    following = ahead[:1]
    if not following.isalnum() or following.islower():
        return False
    if text[match.start()] != "." or text.startswith("..", match.start()):
        return True
    if match.start() - start <= 8 and _LIST_NUMBER.fullmatch(text[start:match.start()].strip()):
        return False
    # Only the last word matters, and no abbreviation is long: a bounded look-back keeps this linear.
    words = text[max(start, match.start() - 32):match.start()].rsplit(None, 2)
    word = words[-1].lstrip(_OPENERS) if words else ""
    lower = word.lower()
    if word in _TITLES or lower in _ABBREVIATIONS:
        return False
    if lower in ("a.m", "p.m"):
        return not (following.isdigit() or _TIME_ZONE.match(ahead))
    # "J. R. R. Tolkien", "U.S. Army": initials and acronyms are followed by more of the name;
    # but in "0 K. By definition" the capital after a number is a unit that ends the sentence.
    after_number = len(words) > 1 and words[-2][-1:].isdigit()
    initial = len(word) == 1 and word.isalpha() and not after_number
    if initial or _ACRONYM.fullmatch(word) or lower in _NAME_PARTS:
        return _LEADING_WORD.match(ahead).group() in _OPENER_WORDS
    return not (following.isdigit() and lower in _BEFORE_NUMBER)
