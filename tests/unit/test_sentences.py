"""English sentence splitting: the hard cases, and real Wikipedia lead sections."""

from __future__ import annotations

import json

import pytest

from pretrain_cli.samples import sample_path
from pretrain_cli.stages.corpus.sentences import split_sentences


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
    ("no terminator at all", ["no terminator at all"]),
    ("  Spaces  around.   And\nnewlines. ", ["Spaces  around.", "And\nnewlines."]),
    ("", []),
    ("   ", []),
])
def test_hard_cases(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


def test_real_lead_sections() -> None:
    summaries = json.loads(sample_path("wiki_summaries").read_text(encoding="utf-8"))
    comedy = split_sentences(summaries["Divine Comedy"]["extract"])
    assert comedy[0].startswith("The Divine Comedy is an Italian narrative poem by Dante Alighieri, begun "
                                "c.\u20091308 and completed c.\u20091321, shortly before the author's death.")
    sentences = [s for entry in list(summaries.values())[:500] for s in split_sentences(entry["extract"])]
    assert len(sentences) > 1500
    # Every sentence starts like one: the splitter never cuts before a lower-case word.
    assert all(not s[0].islower() for s in sentences)
