"""Transcript normalisation: corpus text folded into what an alphabet can spell.

:func:`normalize_transcript` is the one entry point the importers use. In order, it

1. applies Unicode NFKC (full-width digits and letters become ASCII ones) and folds
   typographic apostrophes into ``'``;
2. spells out numbers in English words, where the alphabet has no digits: cardinals
   (``42`` -> ``forty two``, ``1,000,000`` -> ``one million``), years (``1990`` ->
   ``nineteen ninety``, ``1905`` -> ``nineteen oh five``, ``2005`` -> ``two thousand
   five``), ordinals (``21st`` -> ``twenty first``), decimals (``3.14`` -> ``three
   point one four``), numbers with leading zeros digit by digit (``007`` -> ``zero zero
   seven``), money (``$5`` -> ``five dollars``) and percentages (``50%`` -> ``fifty
   percent``), and a few symbols (``&`` ``+`` ``@``);
3. changes the case to the alphabet's (lower case when it has no upper-case letter,
   upper case when it has no lower-case one);
4. folds accents where the plain letter is a label (``café`` -> ``cafe``), turns
   punctuation into word breaks (``.`` and ``'`` outside the alphabet are dropped, so
   ``U.S.`` -> ``us`` and ``don't`` -> ``dont``), collapses spaces.

What is left and still outside the alphabet (a letter of another script, ``ß`` for an
English alphabet) is never dropped silently: :class:`~npspeech.errors.AlphabetError`
names it, and the importer reports the row.

Numbers are read the way an American English speaker reads them, without "and"
(``105`` -> ``one hundred five``); times, dates and abbreviations are not expanded.
"""

from __future__ import annotations

import re
import unicodedata

from npspeech.alphabet import Alphabet
from npspeech.errors import AlphabetError

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
# Short scale, as in American and current British English.
_SCALES = (
    (10**15, "quadrillion"),
    (10**12, "trillion"),
    (10**9, "billion"),
    (10**6, "million"),
    (10**3, "thousand"),
)
# Numbers past this are read digit by digit (account numbers, not quantities).
_LARGEST_CARDINAL = 10**18 - 1
# Irregular ordinals; the rest add "th" ("twenty" -> "twentieth" via the y rule).
_ORDINAL_WORDS = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}
_CURRENCIES = {"$": ("dollar", "cent"), "£": ("pound", "penny"), "€": ("euro", "cent")}
_SYMBOLS = {"&": " and ", "+": " plus ", "@": " at ", "%": " percent "}
_APOSTROPHES = "\u2018\u2019\u02bc\u0060\u00b4\u2032"
# Punctuation that sits inside words or abbreviations: dropped rather than turned into
# a word break when the alphabet lacks it ("U.S." -> "us", "don't" -> "dont").
_DROPPED = ".'"

_ORDINAL = re.compile(r"\b(\d+)(st|nd|rd|th)\b", re.IGNORECASE)
_CURRENCY = re.compile(r"([$£€])\s?(\d+(?:,\d{3})*)(?:\.(\d{2}))?\b")
_PERCENT = re.compile(r"(\d)\s?%")
# A number: digits with optional thousands separators and an optional decimal part.
_NUMBER = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?")


def spell_cardinal(number: int) -> str:
    """English words for a whole number >= 0 (``1234`` -> ``one thousand two hundred
    thirty four``); past 10**18 - 1, the digits one by one.
    """
    if number < 0:
        raise ValueError(f"spell_cardinal: expected a number >= 0, got {number}")
    if number > _LARGEST_CARDINAL:
        return spell_digits(str(number))
    words: list[str] = []
    for scale, name in _SCALES:
        if number >= scale:
            words += [_below_thousand(number // scale), name]
            number %= scale
    if number or not words:
        words.append(_below_thousand(number))
    return " ".join(words)


def _below_thousand(number: int) -> str:
    words = []
    if number >= 100:
        words += [_ONES[number // 100], "hundred"]
        number %= 100
    if number >= 20:
        words.append(_TENS[number // 10])
        number %= 10
        if number:
            words.append(_ONES[number])
    elif number or not words:
        words.append(_ONES[number])
    return " ".join(words)


def spell_ordinal(number: int) -> str:
    """English ordinal words (``21`` -> ``twenty first``, ``100`` -> ``one
    hundredth``).
    """
    words = spell_cardinal(number).split(" ")
    last = words[-1]
    if last in _ORDINAL_WORDS:
        words[-1] = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def spell_year(number: int) -> str:
    """A year as it is spoken: in pairs (``1990`` -> ``nineteen ninety``, ``1905`` ->
    ``nineteen oh five``, ``1900`` -> ``nineteen hundred``), except 2000-2009
    (``two thousand five``) and whole thousands.
    """
    century, rest = divmod(number, 100)
    if number % 1000 == 0 or 2000 <= number <= 2009 or not 10 <= century <= 99:
        return spell_cardinal(number)
    if rest == 0:
        return f"{spell_cardinal(century)} hundred"
    rest_words = f"oh {_ONES[rest]}" if rest < 10 else spell_cardinal(rest)
    return f"{spell_cardinal(century)} {rest_words}"


def spell_digits(digits: str) -> str:
    """Each digit as a word (``"007"`` -> ``zero zero seven``)."""
    return " ".join(_ONES[int(digit)] for digit in digits)


def spell_number(text: str) -> str:
    """Words for a number as written: ``"42"``, ``"1,000"``, ``"3.14"``, ``"1990"``,
    ``"007"``.

    Four-digit whole numbers from 1100 to 2099 without a thousands separator are read
    as years, the common case in running text; write ``1,500`` for "one thousand five
    hundred".
    """
    whole, _, fraction = text.partition(".")
    if "," in whole:
        words = spell_cardinal(int(whole.replace(",", "")))
    elif len(whole) > 1 and whole.startswith("0"):
        words = spell_digits(whole)
    elif len(whole) == 4 and 1100 <= int(whole) <= 2099:
        words = spell_year(int(whole))
    else:
        words = spell_cardinal(int(whole))
    if fraction:
        words += " point " + spell_digits(fraction)
    return words


def _spell_money(match: re.Match) -> str:
    unit, subunit = _CURRENCIES[match.group(1)]
    amount = int(match.group(2).replace(",", ""))
    words = f" {spell_cardinal(amount)} {unit}{'' if amount == 1 else 's'}"
    if match.group(3) and int(match.group(3)):
        cents = int(match.group(3))
        plural = "pence" if subunit == "penny" else subunit + "s"
        words += f" {spell_cardinal(cents)} {subunit if cents == 1 else plural}"
    return words + " "


def spell_numbers(text: str) -> str:
    """``text`` with every number, ordinal, amount of money and percentage in words."""
    text = _CURRENCY.sub(_spell_money, text)
    text = _PERCENT.sub(r"\1 percent ", text)
    text = _ORDINAL.sub(lambda m: f" {spell_ordinal(int(m.group(1)))} ", text)
    # Spaces around each number split digits from letters ("mp3" -> "mp three").
    return _NUMBER.sub(lambda m: f" {spell_number(m.group(0))} ", text)


def normalize_transcript(text: str, alphabet: Alphabet) -> str:
    """Fold ``text`` into ``alphabet``'s labels (see the module docstring).

    Parameters
    ----------
    text
        A transcript as the corpus gives it.
    alphabet
        The labels the result must be spelled in.

    Returns
    -------
    str
        The normalised transcript; empty when ``text`` holds no words.

    Raises
    ------
    AlphabetError
        Naming the characters (and their positions in ``text``) that remain outside
        the alphabet after normalisation.
    """
    labels = set(alphabet.labels)
    original = text
    text = unicodedata.normalize("NFKC", text)
    for apostrophe in _APOSTROPHES:
        text = text.replace(apostrophe, "'")
    if not any(label.isdigit() for label in labels):
        text = spell_numbers(text)
        for symbol, words in _SYMBOLS.items():
            if symbol not in labels:
                text = text.replace(symbol, words)
    has_upper = any(label != label.lower() for label in labels)
    has_lower = any(label != label.upper() for label in labels)
    if not has_upper:
        text = text.lower()
    elif not has_lower:
        text = text.upper()
    pieces = []
    unknown = []
    for character in text:
        if character in labels:
            pieces.append(character)
        elif character.isspace() or _is_word_break(character):
            pieces.append(" ")
        elif character in _DROPPED or unicodedata.category(character)[0] == "C":
            continue  # abbreviation dots, apostrophes, control and format characters
        else:
            folded = "".join(
                c
                for c in unicodedata.normalize("NFKD", character)
                if not unicodedata.combining(c)
            )
            if folded and all(c in labels for c in folded):
                pieces.append(folded)
            else:
                unknown.append(character)
    if unknown:
        named = ", ".join(f"{c!r} (U+{ord(c):04X})" for c in dict.fromkeys(unknown))
        raise AlphabetError(f"characters not in the alphabet: {named} in {original!r}")
    words = "".join(pieces).split()
    if "'" in labels:
        # Apostrophes at a word's ends are quote marks ('hello'), not part of it; the
        # ones inside stay (o'brien, don't).
        words = [word.strip("'") for word in words if word.strip("'")]
    return " ".join(words) if " " in labels else "".join(words)


def _is_word_break(character: str) -> bool:
    """Punctuation and symbols other than ``.`` and ``'``: they separate words."""
    return character not in _DROPPED and unicodedata.category(character)[0] in "PS"
