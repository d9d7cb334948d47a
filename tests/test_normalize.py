"""Transcript normalisation of the dataset importers (tools/importers/normalize.py)."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from npspeech.alphabet import Alphabet, english
from npspeech.errors import AlphabetError

# tools/ sits beside the package, not in it: import it from the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tools.importers.normalize import (  # noqa: E402
    normalize_transcript,
    spell_cardinal,
    spell_number,
    spell_ordinal,
    spell_year,
)

# A reader of number words, written independently of the speller, as its oracle.
_UNITS = {
    word: value
    for value, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen "
        "fourteen fifteen sixteen seventeen eighteen nineteen".split()
    )
}
_UNITS.update(
    {
        w: 10 * (i + 2)
        for i, w in enumerate(
            "twenty thirty forty fifty sixty seventy eighty ninety".split()
        )
    }
)
_SCALE_WORDS = {
    "thousand": 10**3,
    "million": 10**6,
    "billion": 10**9,
    "trillion": 10**12,
    "quadrillion": 10**15,
}


def read_cardinal(words: str) -> int:
    total, group = 0, 0
    for word in words.split():
        if word in _UNITS:
            group += _UNITS[word]
        elif word == "hundred":
            group *= 100
        else:
            total += group * _SCALE_WORDS[word]
            group = 0
    return total + group


@pytest.mark.parametrize(
    ("number", "words"),
    [
        (0, "zero"),
        (7, "seven"),
        (13, "thirteen"),
        (42, "forty two"),
        (100, "one hundred"),
        (105, "one hundred five"),
        (999, "nine hundred ninety nine"),
        (1000, "one thousand"),
        (1234, "one thousand two hundred thirty four"),
        (1_000_000, "one million"),
        (2_000_000_005, "two billion five"),
    ],
)
def test_spell_cardinal(number, words):
    assert spell_cardinal(number) == words


@given(st.integers(min_value=0, max_value=10**18 - 1))
def test_spell_cardinal_reads_back(number):
    words = spell_cardinal(number)
    assert read_cardinal(words) == number
    assert set(words) <= set("abcdefghijklmnopqrstuvwxyz ")


def test_spell_cardinal_rejects_negative_and_reads_huge_numbers_as_digits():
    with pytest.raises(ValueError, match="-1"):
        spell_cardinal(-1)
    assert spell_cardinal(10**18) == "one " + "zero " * 17 + "zero"


@pytest.mark.parametrize(
    ("number", "words"),
    [
        (1, "first"),
        (2, "second"),
        (3, "third"),
        (5, "fifth"),
        (8, "eighth"),
        (12, "twelfth"),
        (20, "twentieth"),
        (21, "twenty first"),
        (100, "one hundredth"),
        (1000, "one thousandth"),
    ],
)
def test_spell_ordinal(number, words):
    assert spell_ordinal(number) == words


@pytest.mark.parametrize(
    ("year", "words"),
    [
        (1066, "ten sixty six"),
        (1900, "nineteen hundred"),
        (1905, "nineteen oh five"),
        (1990, "nineteen ninety"),
        (2000, "two thousand"),
        (2005, "two thousand five"),
        (2019, "twenty nineteen"),
    ],
)
def test_spell_year(year, words):
    assert spell_year(year) == words


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("42", "forty two"),
        ("1990", "nineteen ninety"),
        ("1,500", "one thousand five hundred"),
        ("3.14", "three point one four"),
        ("007", "zero zero seven"),
        ("2100", "two thousand one hundred"),
    ],
)
def test_spell_number(text, words):
    assert spell_number(text) == words


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello, World!", "hello world"),
        (
            "In 1990 he bought 42 apples.",
            "in nineteen ninety he bought forty two apples",
        ),
        (
            "the 21st century, the 100th time",
            "the twenty first century the one hundredth time",
        ),
        ("$5.50 and £1", "five dollars fifty cents and one pound"),
        ("50% off", "fifty percent off"),
        ("Café naïve", "cafe naive"),
        ("don\u2019t say \u201cno\u201d", "don't say no"),
        ("'Quoted,' she said", "quoted she said"),
        ("U.S. well-known a/b", "us well known a b"),
        ("rock & roll", "rock and roll"),
        ("mp3 3D", "mp three three d"),
        ("\uff14\uff12", "forty two"),  # full-width digits
        ("tab\tand  spaces\n", "tab and spaces"),
    ],
)
def test_normalize_english(text, expected):
    assert normalize_transcript(text, english()) == expected


def test_normalize_reports_characters_the_alphabet_lacks():
    with pytest.raises(AlphabetError, match=r"'ß' \(U\+00DF\).*Straße"):
        normalize_transcript("Straße", english())
    with pytest.raises(AlphabetError, match="U\\+65E5"):
        normalize_transcript("hello 日本", english())


def test_normalize_follows_the_alphabets_case_digits_and_space():
    upper = Alphabet([" ", "'", *"ABCDEFGHIJKLMNOPQRSTUVWXYZ"])
    assert normalize_transcript("it's 2 o'clock", upper) == "IT'S TWO O'CLOCK"
    digits = Alphabet([" ", *"abcdefghijklmnopqrstuvwxyz0123456789"])
    # Digits are labels here, so they stay; the apostrophe is not, so it goes.
    assert normalize_transcript("Room 42, don't", digits) == "room 42 dont"
    no_space = Alphabet(list("abc"))
    assert normalize_transcript("a b, c", no_space) == "abc"
    assert normalize_transcript(" ... !", english()) == ""


def test_normalize_matches_the_kathleen_corpus_transcripts(data_dir):
    """The staged kathleen_arctic CSVs were normalised by hand from the corpus's own
    .txt files; the importer's normalisation gives the same text for every row.
    """
    root = data_dir / "kathleen_arctic"
    compared = 0
    for name in ("train.csv", "dev.csv", "test.csv"):
        with (root / name).open(encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                text_file = (
                    root / "original_txt" / (Path(row["wav_filename"]).stem + ".txt")
                )
                if not text_file.is_file():
                    continue  # the takes not staged as their prompt's main recording
                original = text_file.read_text(encoding="utf-8")
                assert normalize_transcript(original, english()) == row["transcript"]
                compared += 1
    assert compared > 1000
