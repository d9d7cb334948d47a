"""LibriSpeech: ``<split>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt`` + FLAC.

Each ``*.trans.txt`` line is ``<utterance id> <TRANSCRIPT>``, the audio
``<utterance id>.flac`` beside it. The split is the folder three levels above the
transcript file (``train-clean-100``, ``dev-clean``, ``test-other``, ...), so ``SRC``
can be the ``LibriSpeech`` folder, the folder holding it, or one split folder; each
split found gets its own CSV.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import Found, Item, Problem, read_text, require_folder

NAME = "librispeech"
HELP = "LibriSpeech: *.trans.txt + FLAC, one CSV per split folder"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """LibriSpeech has no options of its own."""


def find(source: Path, options: argparse.Namespace) -> Found:
    """Every utterance of every ``*.trans.txt`` under ``source``."""
    require_folder(source, "a LibriSpeech folder (or one of its split folders)")
    items, problems, splits = [], [], []
    for transcripts in sorted(source.rglob("*.trans.txt")):
        chapter = transcripts.parent
        split = chapter.parent.parent.name
        if split not in splits:
            splits.append(split)
        for number, line in enumerate(read_text(transcripts).splitlines(), start=1):
            where = f"{transcripts}:{number}"
            if not line.strip():
                continue
            utterance, _, text = line.strip().partition(" ")
            audio = chapter / f"{utterance}.flac"
            if not audio.is_file():
                message = f"audio file {audio} not found"
                problems.append(Problem(split, where, "missing_audio", message))
                continue
            key = f"{split}/{chapter.parent.name}/{chapter.name}/{utterance}"
            items.append(Item(key, split, audio, text, where))
    return Found(items, problems, splits)
