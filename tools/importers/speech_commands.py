"""Speech Commands: a folder per word, ``validation_list.txt`` and ``testing_list.txt``.

Each ``<word>/<speaker>_nohash_<n>.wav`` is one utterance of ``<word>`` (the folder
name, with ``_`` read as a space). Files listed in ``validation_list.txt`` go to
``dev``, those in ``testing_list.txt`` to ``test``, the rest to ``train``, as the
dataset's README prescribes. ``_background_noise_`` holds noise, not words, and is
left out.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import Found, Item, read_text, require_folder

NAME = "speech-commands"
HELP = "Speech Commands: <word>/*.wav + validation_list.txt/testing_list.txt"
LISTS = (("validation_list.txt", "dev"), ("testing_list.txt", "test"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Speech Commands has no options of its own."""


def find(source: Path, options: argparse.Namespace) -> Found:
    """Every ``<word>/*.wav`` under ``source`` with its official split."""
    require_folder(source, "a Speech Commands folder (one folder per word)")
    split_of = {}
    for list_name, split in LISTS:
        path = source / list_name
        if path.is_file():
            for line in read_text(path).splitlines():
                if line.strip():
                    split_of[line.strip()] = split
    items = []
    for word in sorted(p for p in source.iterdir() if p.is_dir()):
        if word.name.startswith("_"):  # _background_noise_
            continue
        for audio in sorted(word.glob("*.wav")):
            relative = f"{word.name}/{audio.name}"
            split = split_of.get(relative, "train")
            text = word.name.replace("_", " ")
            items.append(
                Item(f"{word.name}/{audio.stem}", split, audio, text, relative)
            )
    return Found(items, [], ["train", "dev", "test"])
