"""A folder of audio files, each with a same-named ``.txt`` or ``.lab`` transcript.

``clip.wav`` + ``clip.txt`` (or ``clip.lab``, the Montreal Forced Aligner's plain-text
transcript; ``.txt`` wins when both exist), anywhere under ``SRC``. Audio in any format
libsndfile reads (WAV, FLAC, OGG/Opus, MP3). An audio file without a transcript is
reported; text files without audio are not (they may be anything).

When ``SRC`` holds folders named ``train``, ``dev`` and/or ``test``, those are the
splits; otherwise a seeded split by file makes them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from npspeech.errors import DataError

from .common import Found, Item, Problem, read_text, require_folder, seeded_split

NAME = "folder"
HELP = "any folder of audio files with same-named .txt/.lab transcripts"
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif")
TEXT_SUFFIXES = (".txt", ".lab")
SPLIT_FOLDERS = ("train", "dev", "test")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options beyond the seeded split's (added by the CLI)."""


def find(source: Path, options: argparse.Namespace) -> Found:
    """Audio files under ``source`` paired with their transcripts."""
    require_folder(source, "a folder of audio files with .txt/.lab transcripts")
    audio_files = sorted(
        path
        for path in source.rglob("*")
        if path.suffix.lower() in AUDIO_SUFFIXES
        and path.is_file()
        and not path.name.startswith(".")
    )
    keys = {
        path: path.relative_to(source).with_suffix("").as_posix()
        for path in audio_files
    }
    seeded = not any((source / name).is_dir() for name in SPLIT_FOLDERS)
    if not seeded:
        split_of = {
            path: keys[path].split("/")[0]
            for path in audio_files
            if keys[path].split("/")[0] in SPLIT_FOLDERS
        }
        ignored = [path for path in audio_files if path not in split_of]
        audio_files = [path for path in audio_files if path in split_of]
        problems = [
            Problem("", str(path), "outside_splits", "not under train/, dev/ or test/")
            for path in ignored
        ]
    else:
        by_key = seeded_split(
            keys.values(), options.seed, options.dev_fraction, options.test_fraction
        )
        split_of = {path: by_key[keys[path]] for path in audio_files}
        problems = []
    items = []
    for path in audio_files:
        split = split_of[path]
        transcript = next(
            (
                path.with_suffix(suffix)
                for suffix in TEXT_SUFFIXES
                if path.with_suffix(suffix).is_file()
            ),
            None,
        )
        if transcript is None:
            message = f"no {path.stem}.txt or {path.stem}.lab beside it"
            problems.append(Problem(split, str(path), "missing_transcript", message))
            continue
        try:
            text = " ".join(read_text(transcript).split())
        except DataError as error:
            problems.append(
                Problem(split, str(transcript), "unreadable_transcript", str(error))
            )
            continue
        items.append(Item(keys[path], split, path, text, str(transcript)))
    present = [name for name in SPLIT_FOLDERS if (source / name).is_dir()]
    return Found(items, problems, list(SPLIT_FOLDERS) if seeded else present)
