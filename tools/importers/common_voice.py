"""Common Voice: ``train.tsv``, ``dev.tsv``, ``test.tsv``, ``validated.tsv`` + clips.

``SRC`` is one language's folder of a Common Voice release (``cv-corpus-*/en``). Each
TSV named by ``--splits`` (default ``train,dev,test,validated``; those missing are
skipped) becomes the CSV of the same name; its ``path`` column names an MP3 under
``clips/`` and ``sentence`` holds the text. ``validated.tsv`` overlaps the official
splits: a clip listed in both is converted once and appears in both CSVs.

MP3 is decoded by libsndfile (version 1.1 and later), else by PyAV.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from npspeech.errors import DataError

from .common import Found, Item, Problem, require_folder

NAME = "common-voice"
HELP = "Common Voice: train/dev/test/validated.tsv + clips/*.mp3"
DEFAULT_SPLITS = "train,dev,test,validated"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--splits``: the TSVs to import."""
    parser.add_argument(
        "--splits",
        default=DEFAULT_SPLITS,
        help=f"comma-separated TSV names to import (default {DEFAULT_SPLITS})",
    )


def find(source: Path, options: argparse.Namespace) -> Found:
    """The rows of each TSV in ``options.splits`` that exists under ``source``."""
    require_folder(source, "a Common Voice language folder (with clips/ and *.tsv)")
    clips = source / "clips"
    names = [name.strip() for name in options.splits.split(",") if name.strip()]
    tables = [(name, source / f"{name}.tsv") for name in names]
    tables = [(name, path) for name, path in tables if path.is_file()]
    if not tables:
        raise DataError(
            f"{source}: none of {', '.join(n + '.tsv' for n in names)} found; "
            "expected a Common Voice language folder"
        )
    items, problems = [], []
    for split, table in tables:
        for number, row in _rows(table):
            where = f"{table}:{number}"
            name, text = row.get("path"), row.get("sentence")
            if not name or text is None:
                message = "row lacks the path or sentence column"
                problems.append(Problem(split, where, "malformed_row", message))
                continue
            audio = clips / name
            if not audio.is_file():
                message = f"audio file {audio} not found"
                problems.append(Problem(split, where, "missing_audio", message))
                continue
            items.append(Item(Path(name).stem, split, audio, text, where))
    return Found(items, problems, [name for name, _ in tables])


def _rows(table: Path):
    """``(line, row dict)`` of a Common Voice TSV (header first, no quoting)."""
    # Sentences hold quote marks that are text, not CSV quoting; some are long.
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    try:
        with table.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
            for row in reader:
                yield reader.line_num, row
    except UnicodeDecodeError as error:
        raise DataError(f"{table}: not UTF-8 text ({error})") from None
