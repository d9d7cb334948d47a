"""LJSpeech: ``metadata.csv`` (``id|text|normalized text``, no header) + ``wavs/``.

The normalised column (numbers and abbreviations already spelled out by the corpus
authors) is used, the raw one where it is empty. The corpus has no official split: a
seeded split by utterance (one speaker) makes ``train``/``dev``/``test``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from npspeech.errors import DataError

from .common import Found, Item, Problem, read_text, seeded_split

NAME = "ljspeech"
HELP = "LJSpeech: metadata.csv + wavs/, seeded split by utterance"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options beyond the seeded split's (added by the CLI)."""


def find(source: Path, options: argparse.Namespace) -> Found:
    """The utterances of ``source/metadata.csv``."""
    metadata = source / "metadata.csv"
    if not metadata.is_file():
        raise DataError(f"{metadata}: not found; expected an LJSpeech folder")
    rows, problems = [], []
    # Split on "|" by hand: the text holds quotes that a CSV reader would interpret.
    for number, line in enumerate(read_text(metadata).splitlines(), start=1):
        where = f"{metadata}:{number}"
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) < 2:
            message = f"expected id|text|normalized text, got {line!r}"
            problems.append(Problem("", where, "malformed_row", message))
            continue
        text = fields[2] if len(fields) > 2 and fields[2].strip() else fields[1]
        rows.append((fields[0].strip(), text, where))
    splits = seeded_split(
        (key for key, _, _ in rows),
        options.seed,
        options.dev_fraction,
        options.test_fraction,
    )
    items = []
    for key, text, where in rows:
        audio = source / "wavs" / f"{key}.wav"
        if not audio.is_file():
            message = f"audio file {audio} not found"
            problems.append(Problem(splits[key], where, "missing_audio", message))
            continue
        items.append(Item(key, splits[key], audio, text, where))
    return Found(items, problems, ["train", "dev", "test"])
