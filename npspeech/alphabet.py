"""Alphabets: the labels a model emits, in DeepSpeech's ``alphabet.txt`` format.

Label ``i`` of an alphabet with ``n`` labels is class ``i`` of the model's output; the
CTC blank is class ``n`` (the last one), as in DeepSpeech.

File format (DeepSpeech ``util/text.py`` and ``native_client/alphabet.cc``): one label
per line, UTF-8; a line starting with ``#`` is a comment; ``\\#`` is a literal ``#``; a
line holding a single space is the space label. Empty lines are skipped.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from .errors import AlphabetError

# Characters that separate words in running text and become a space when normalising.
_WORD_SEPARATORS = "-\u2010\u2011\u2012\u2013\u2014/_\t\n\r"
# Typographic apostrophes folded into the ASCII one.
_APOSTROPHES = "\u2018\u2019\u02bc\u0060\u00b4"


class Alphabet:
    """An ordered set of labels with encode/decode between text and class ids.

    Parameters
    ----------
    labels
        The labels in class order. Each is a non-empty string; no label repeats.

    Notes
    -----
    Labels are usually single characters. Multi-character labels are allowed, and text
    is then encoded greedily, longest label first.
    """

    def __init__(self, labels: Sequence[str]):
        labels = list(labels)
        if not labels:
            raise AlphabetError("an alphabet needs at least one label")
        seen: dict[str, int] = {}
        for index, label in enumerate(labels):
            if not isinstance(label, str) or label == "":
                raise AlphabetError(
                    f"label {index} is empty or not a string: {label!r}"
                )
            if label in seen:
                raise AlphabetError(
                    f"label {label!r} appears twice (classes {seen[label]} and {index})"
                )
            seen[label] = index
        self._labels = tuple(labels)
        self._index = seen
        self._max_label_length = max(len(label) for label in labels)

    # -- construction ------------------------------------------------------------------
    @classmethod
    def from_file(cls, path: str | os.PathLike) -> Alphabet:
        """Read a DeepSpeech ``alphabet.txt``.

        Raises
        ------
        AlphabetError
            If the file is missing, not UTF-8, holds no label or repeats one
            (line named).
        """
        path = Path(path)
        try:
            text = path.read_bytes().decode("utf-8")
        except FileNotFoundError:
            raise AlphabetError(f"{path}: alphabet file not found") from None
        except IsADirectoryError:
            raise AlphabetError(
                f"{path}: is a directory, not an alphabet file"
            ) from None
        except UnicodeDecodeError as error:
            raise AlphabetError(f"{path}: not UTF-8 text ({error})") from None
        labels: list[str] = []
        lines: list[int] = []
        for line_number, line in enumerate(text.split("\n"), start=1):
            line = line.rstrip("\r")
            if line.startswith("\\#"):
                line = "#" + line[2:]
            elif line.startswith("#") or line == "":
                continue
            if line in labels:
                first = lines[labels.index(line)]
                raise AlphabetError(
                    f"{path}:{line_number}: label {line!r} already defined "
                    f"on line {first}"
                )
            labels.append(line)
            lines.append(line_number)
        if not labels:
            raise AlphabetError(f"{path}: no labels (only comments or empty lines)")
        return cls(labels)

    @classmethod
    def from_transcripts(cls, transcripts: Iterable[str]) -> Alphabet:
        """The sorted set of characters used by ``transcripts``, space first."""
        characters = set()
        for transcript in transcripts:
            characters.update(transcript)
        if not characters:
            raise AlphabetError("cannot derive an alphabet from empty transcripts")
        ordered = sorted(characters - {" "})
        return cls(([" "] if " " in characters else []) + ordered)

    def to_file(self, path: str | os.PathLike) -> None:
        """Write in DeepSpeech's format (``#`` escaped as ``\\#``)."""
        lines = ["# Each line is one label; the CTC blank is implicit and last."]
        lines += [
            "\\" + label if label.startswith("#") else label for label in self._labels
        ]
        Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")

    # -- queries -----------------------------------------------------------------------
    @property
    def labels(self) -> tuple[str, ...]:
        """The labels in class order."""
        return self._labels

    @property
    def size(self) -> int:
        """Number of labels, without the blank."""
        return len(self._labels)

    @property
    def blank(self) -> int:
        """Class id of the CTC blank: the last class, ``size``."""
        return len(self._labels)

    @property
    def n_classes(self) -> int:
        """Number of model outputs: the labels plus the blank (``V``)."""
        return len(self._labels) + 1

    @property
    def space(self) -> int | None:
        """Class id of the space label, or None when the alphabet has none."""
        return self._index.get(" ")

    def __len__(self) -> int:
        return len(self._labels)

    def __contains__(self, label: object) -> bool:
        return label in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Alphabet) and self._labels == other._labels

    def __hash__(self) -> int:
        return hash(self._labels)

    def __repr__(self) -> str:
        return f"Alphabet({list(self._labels)!r})"

    # -- encode / decode ---------------------------------------------------------------
    def unknown_characters(self, text: str) -> list[tuple[int, str]]:
        """Positions and characters of ``text`` that no label covers."""
        unknown = []
        position = 0
        while position < len(text):
            length = self._match(text, position)
            if length == 0:
                unknown.append((position, text[position]))
                position += 1
            else:
                position += length
        return unknown

    def encode(self, text: str) -> np.ndarray:
        """Class ids of ``text``, shape ``(L,)`` int32.

        Raises
        ------
        AlphabetError
            Naming the first character (and its position) that no label covers.
        """
        ids = []
        position = 0
        while position < len(text):
            length = self._match(text, position)
            if length == 0:
                raise AlphabetError(
                    f"character {text[position]!r} (U+{ord(text[position]):04X}) "
                    f"at position {position} of {text!r} is not in the alphabet"
                )
            ids.append(self._index[text[position : position + length]])
            position += length
        return np.asarray(ids, dtype=np.int32)

    def decode(self, ids: Iterable[int]) -> str:
        """Text of class ids; the blank and out-of-range ids are errors."""
        try:
            return "".join(self._labels[int(i)] for i in ids)
        except IndexError:
            bad = [int(i) for i in ids if not 0 <= int(i) < len(self._labels)]
            raise AlphabetError(
                f"class ids {bad[:5]} are outside the alphabet's "
                f"{len(self._labels)} labels"
            ) from None

    def normalize(self, text: str) -> str:
        """Fold ``text`` into what the alphabet can spell.

        Lower-cases when the alphabet has no upper-case letters, folds typographic
        apostrophes and accents (``é`` -> ``e``) where the plain letter is a label,
        turns hyphens and slashes into spaces, drops any other character the alphabet
        lacks and collapses runs of spaces. This is the normalisation corpus text gets
        before it reaches a language model.
        """
        if not any(label != label.lower() for label in self._labels):
            text = text.lower()
        pieces = []
        for character in text:
            if character in self._index:
                pieces.append(character)
            elif character in _WORD_SEPARATORS or character.isspace():
                pieces.append(" ")
            elif character in _APOSTROPHES and "'" in self._index:
                pieces.append("'")
            else:
                folded = unicodedata.normalize("NFKD", character)
                pieces.extend(c for c in folded if c in self._index)
        words = "".join(pieces).split(" ")
        return (
            " ".join(word for word in words if word)
            if " " in self._index
            else "".join(words)
        )

    def _match(self, text: str, position: int) -> int:
        """Length of the longest label starting at ``text[position]`` (0 if none)."""
        for length in range(min(self._max_label_length, len(text) - position), 0, -1):
            if text[position : position + length] in self._index:
                return length
        return 0


def english() -> Alphabet:
    """DeepSpeech's English alphabet: space, ``a``-``z`` and the apostrophe
    (28 labels).
    """
    return Alphabet([" "] + [chr(c) for c in range(ord("a"), ord("z") + 1)] + ["'"])
