"""Sentence splitting: each rule, hard cases from the real English Wikipedia and People's Daily
samples, whole-sample sanity figures, and guards against super-linear time."""

from __future__ import annotations

import json
import re
import time

import pytest

from pretrain_cli.samples import sample_path
from pretrain_cli.stages.corpus.mediawiki import iter_pages
from pretrain_cli.stages.corpus.sentences import split_sentences
from pretrain_cli.stages.corpus.wikitext import wikitext_to_paragraphs


@pytest.fixture(scope="module")
def enwiki() -> list[str]:
    """The clean paragraphs of every article in the real English Wikipedia dump."""
    return [paragraph for page in iter_pages(sample_path("enwiki")) if page.ns == 0 and not page.redirect
            for paragraph in wikitext_to_paragraphs(page.text)]


@pytest.fixture(scope="module")
def summaries() -> list[str]:
    entries = json.loads(sample_path("wiki_summaries").read_text(encoding="utf-8"))
    return [entry["extract"] for entry in entries.values()]


@pytest.fixture(scope="module")
def zh_news() -> list[str]:
    """People's Daily lines, tags stripped; their spaces were only the tagger's, so none remain."""
    lines = sample_path("zh_news").read_text(encoding="utf-8").splitlines()
    return [line for line in (re.sub(r"/[a-zA-Z]+\s*", "", raw).strip() for raw in lines) if line]


def sentences_of(paragraphs: list[str], needle: str, lang: str = "en") -> list[str]:
    """The sentences of the first real paragraph that contains `needle`."""
    return split_sentences(next(p for p in paragraphs if needle in p), lang)


def assert_split(sentences: list[str], end: str, start: str) -> None:
    """One sentence ends with `end` and the next begins with `start`."""
    pairs = list(zip(sentences, sentences[1:], strict=False))
    assert any(a.endswith(end) and b.startswith(start) for a, b in pairs), sentences


def assert_lossless(text: str, sentences: list[str]) -> None:
    assert re.sub(r"\s+", "", "".join(sentences)) == re.sub(r"\s+", "", text)


@pytest.mark.parametrize(("text", "expected"), [
    ('Dr. J. R. R. Tolkien was born in 1892. He said "Go." Then he left.',
     ["Dr. J. R. R. Tolkien was born in 1892.", 'He said "Go."', "Then he left."]),
    ("Mr. Smith and Mrs. Jones met at St. Paul's, e.g. on Sundays, i.e. weekly. They talked.",
     ["Mr. Smith and Mrs. Jones met at St. Paul's, e.g. on Sundays, i.e. weekly.", "They talked."]),
    ("The value of pi is 3.14 approximately. It is irrational.",
     ["The value of pi is 3.14 approximately.", "It is irrational."]),
    ("Wait... What happened? Nobody knows! Really… Yes. He paused... then left.",
     ["Wait...", "What happened?", "Nobody knows!", "Really…", "Yes.", "He paused... then left."]),
    ("The U.S. Army grew. It was 1942.", ["The U.S. Army grew.", "It was 1942."]),
    ("See No. 5 on the list and p. 12 of Vol. 3. No. That is wrong.",
     ["See No. 5 on the list and p. 12 of Vol. 3.", "No.", "That is wrong."]),
    ("It was begun c. 1308 and finished on Jan. 5, 1321. Dante died soon after.",
     ["It was begun c. 1308 and finished on Jan. 5, 1321.", "Dante died soon after."]),
    ("The scale starts at 0 K. By definition it is absolute.",
     ["The scale starts at 0 K.", "By definition it is absolute."]),
    ("(This is a parenthetical sentence.) The next one follows. He said: “Stop.” She stopped.",
     ["(This is a parenthetical sentence.)", "The next one follows.", "He said: “Stop.”", "She stopped."]),
    ("Apples, oranges, etc. Fruits are good. Smith vs. Jones was decided. Gary Becker (1992) and Robert "
     "Lucas Jr. (1995) won. The meeting is at 5 p.m. Please come.",
     ["Apples, oranges, etc.", "Fruits are good.", "Smith vs. Jones was decided.",
      "Gary Becker (1992) and Robert Lucas Jr. (1995) won.", "The meeting is at 5 p.m.", "Please come."]),
    # Titles are matched as written: "Ft." is a fort, "ft." a unit that can end a sentence.
    ("He served under Bvt. Brig. Gen. Atkinson at Ft. Sumter. It rose 2413 ft. Alabama is flat.",
     ["He served under Bvt. Brig. Gen. Atkinson at Ft. Sumter.", "It rose 2413 ft.", "Alabama is flat."]),
    ("Launch was at 9:32 a.m. EDT on the pad. Buses run until 12:30 a.m. 365 days a year.",
     ["Launch was at 9:32 a.m. EDT on the pad.", "Buses run until 12:30 a.m. 365 days a year."]),
    # Initials, acronyms and "et al." end a sentence only before a word that never names anything.
    ("Roe v. Wade and Doe v. Bolton were decided in Washington, D.C. The city grew. It was built "
     "c. AD 30 in the 2nd c. BCE. It was shown by Smith et al. The results held, as Smith et al. (2010) say.",
     ["Roe v. Wade and Doe v. Bolton were decided in Washington, D.C.", "The city grew.",
      "It was built c. AD 30 in the 2nd c. BCE.", "It was shown by Smith et al.",
      "The results held, as Smith et al. (2010) say."]),
    ("1. The first point. 2. The second point.", ["1. The first point.", "2. The second point."]),
    ("The GDP was Rp. 44.30 trillion. Order Beloniformes [incl. Gobiesociformes] is large.",
     ["The GDP was Rp. 44.30 trillion.", "Order Beloniformes [incl. Gobiesociformes] is large."]),
    ("no terminator at all", ["no terminator at all"]),
    ("  Spaces  around.   And\nnewlines. ", ["Spaces  around.", "And\nnewlines."]),
    ("", []),
    ("   ", []),
])
def test_english_rules(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


@pytest.mark.parametrize("snippet", [
    "as chief of staff to Bvt. Brig. Gen. Henry Atkinson.",
    "(9:32:00 a.m. EDT local time)",
    "from 3:30 a.m. until 12:30 a.m. 365 days a year.",
    "ended the year ranked world no. 25.",
    "(as in Gottschalk v. Benson).",
    "the firing on Ft. Sumter",
    "475 (7th Cir. 2007)",
    "Lysander Spooner and William B. Greene had been members",
    "general Robert E. Lee, Lincoln was assassinated",
    "According to Chaubey et al. (2010),",
    "high latitudes (e.g. Siberia) were neutral",
    "a jobless rate of 21.5% among",
])
def test_enwiki_abbreviations_stay_inside_sentences(enwiki: list[str], snippet: str) -> None:
    assert any(snippet in s for s in sentences_of(enwiki, snippet)), snippet


@pytest.mark.parametrize(("end", "start"), [
    ("run at 240 V.", "For the same amount of power"),            # a unit after a number
    ("at a height of 2,413 ft (735 m).", "Alabama's land consists"),
    ("in Washington, D.C.", "He kept close tabs"),                 # an acronym before a sentence opener
    ("possibly in the 7th century B.C.", "The Aethiopis is now lost"),
    ('simply stated, "Thank you Apollo 8.', 'You saved 1968."'),  # sentences inside a quotation
    ("crystallization of Northern sentiment...", "Anger swept the land."),
    ("eventually became logographic.", "(See below.)"),
])
def test_enwiki_boundaries(enwiki: list[str], end: str, start: str) -> None:
    assert_split(sentences_of(enwiki, f"{end} {start}"), end, start)


def test_real_lead_sections(summaries: list[str]) -> None:
    comedy = split_sentences(next(s for s in summaries if s.startswith("The Divine Comedy is")))
    assert comedy[0].startswith("The Divine Comedy is an Italian narrative poem by Dante Alighieri, begun "
                                "c.\u20091308 and completed c.\u20091321, shortly before the author's death.")
    for snippet in ("in Prunus subg. Prunus.", "an estimated 2016 GDP at Rp. 44.30 trillion.",
                    "crucified in Jerusalem c.\u2009AD\xa030–33.", "from the 2nd c. BCE to the 1st c. CE.",
                    "The Nutcracker, Op. 71, is"):
        assert any(snippet in s for s in sentences_of(summaries, snippet)), snippet
    assert_split(sentences_of(summaries, "Emperor Justinian I."), "Emperor Justinian I.", "It is also")


def test_whole_english_samples_sanity(enwiki: list[str], summaries: list[str]) -> None:
    sentences: list[str] = []
    inner: list[str] = []  # every sentence but a paragraph's last, so each ends where the splitter cut
    for paragraph in enwiki + summaries:
        split = split_sentences(paragraph)
        assert_lossless(paragraph, split)
        assert not any(s[0].islower() for s in split[1:])  # never cut before a lower-case word
        sentences += split
        inner += split[:-1]
    assert len(sentences) > 50_000
    # Lower-case starts come only from list items and formula lines that open a paragraph.
    assert sum(s[0].islower() for s in sentences) / len(sentences) < 0.005
    # Cuts after an abbreviation leave fragments of one or two words ("Brig.", "Prunus.").
    assert sum(len(s.split()) <= 2 for s in inner) / len(inner) < 0.005
    titles = {"Mr.", "Mrs.", "Dr.", "St.", "Gen.", "Brig.", "Lt.", "Capt.", "e.g.", "i.e.", "vs."}
    assert not [s for s in inner if s.rsplit(None, 1)[-1] in titles]


@pytest.mark.parametrize(("text", "expected"), [
    ("今天下雨。明天晴！后天呢？", ["今天下雨。", "明天晴！", "后天呢？"]),
    ("真的吗？！我不信……你呢?!", ["真的吗？！", "我不信……", "你呢?!"]),
    ("他说：“我们走吧。”然后走了。", ["他说：“我们走吧。”", "然后走了。"]),
    ("“好！”，他说。《回家！》是一本书。", ["“好！”，他说。", "《回家！》是一本书。"]),
    ("等等......好。", ["等等......", "好。"]),
    ("增长3.5亿元，下降２．５％。访问www.people.com.cn网站。",
     ["增长3.5亿元，下降２．５％。", "访问www.people.com.cn网站。"]),
    # Latin text inside a Chinese paragraph splits by the English rules, also right before Chinese.
    ("他说：This is a test. It works.然后走了。", ["他说：This is a test.", "It works.", "然后走了。"]),
    ("美国U.S.政府宣布。Dr.王来了。", ["美国U.S.政府宣布。", "Dr.王来了。"]),
    ("", []),
])
def test_cjk_rules(text: str, expected: list[str]) -> None:
    assert split_sentences(text, "zh") == expected


def test_japanese_quotes_bound_by_a_particle() -> None:
    assert split_sentences("彼は「行くよ。」と言った。そして帰った！「はい。」「いいえ。」", "ja") == [
        "彼は「行くよ。」と言った。", "そして帰った！", "「はい。」", "「いいえ。」"]


@pytest.mark.parametrize(("end", "start"), [
    # A quotation ending in a stop ends the sentence; the narration after it starts a new one.
    ("背道而驰的。”", "他说，要不是受种族隔离制度的影响"),
    ("精神可不能丢。”", "李鹏最后祝他们新春快乐"),
    ("我每天服用自己的产品福寿仙……”", "他满自豪地说。"),
    ("到头来离老百姓愈来愈远，这种后果岂非与学习的初衷背道而驰？！", "（作者单位：解放日报）"),
])
def test_people_daily_boundaries(zh_news: list[str], end: str, start: str) -> None:
    assert_split(sentences_of(zh_news, end, "zh"), end, start)


@pytest.mark.parametrize("snippet", [
    "国际旅游收入达１１０．８亿多美元",         # a full-width decimal point
    "多多来稿。———编者",                        # an attribution after a dash
    "应当承担赔偿责任……”的规定",                # a quotation bound by 的
    "刊登的《如此美容美发店！》披露了",          # a stop inside a title
])
def test_people_daily_kept_together(zh_news: list[str], snippet: str) -> None:
    sentences = sentences_of(zh_news, snippet, "zh")
    assert any(snippet in s for s in sentences), sentences


def test_whole_chinese_sample_sanity(zh_news: list[str]) -> None:
    sentences = 0
    for line in zh_news:
        split = split_sentences(line, "zh")
        assert_lossless(line, split)
        for sentence in split[:-1]:
            assert re.search(r"[。！？!?…][”’」』）》】\"')]*$", sentence), sentence
        for sentence in split[1:]:
            assert sentence[0] not in "，、；：。！？”’」』）》】", sentence
        sentences += len(split)
    assert sentences > 2 * len(zh_news)  # the sample's lines are paragraphs of several sentences


@pytest.mark.parametrize(("lang", "cjk"), [
    ("zh", True), ("ZH", True), ("zh-Hant", True), ("zh_TW", True), ("ja", True), ("yue", True),
    ("en", False), ("de", False), ("ko", False), ("", False),
])
def test_language_picks_the_rules(lang: str, cjk: bool) -> None:
    assert split_sentences("好！他说。", lang) == (["好！", "他说。"] if cjk else ["好！他说。"])


@pytest.mark.parametrize(("text", "lang", "expected"), [
    # Caseless scripts: the word after the stop is not lower case, so it opens a sentence.
    ("안녕하세요. 반갑습니다. 3.5 퍼센트입니다.", "ko", ["안녕하세요.", "반갑습니다.", "3.5 퍼센트입니다."]),
    ("यह पहला वाक्य है। यह दूसरा है।", "hi", ["यह पहला वाक्य है।", "यह दूसरा है।"]),
    ("Это первое предложение. Это второе, т.е. продолжение! Ещё?", "ru",
     ["Это первое предложение.", "Это второе, т.е. продолжение!", "Ещё?"]),
])
def test_other_scripts_take_the_english_rules(text: str, lang: str, expected: list[str]) -> None:
    assert split_sentences(text, lang) == expected


@pytest.mark.parametrize("text", [
    "." * 100_000, "。" * 100_000, "…" * 100_000, "？！" * 50_000, ". " * 50_000, "A. " * 50_000,
    "U.S. " * 20_000, "中. " * 30_000, "Go." + "”" * 100_000 + " Next",
])
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_pathological_input_stays_linear(text: str, lang: str) -> None:
    # A guard, not a benchmark: linear time is tens of milliseconds; quadratic would be minutes.
    started = time.perf_counter()
    split_sentences(text, lang)
    assert time.perf_counter() - started < 1.0
