"""VCTK: ``txt/<speaker>/<id>.txt`` + ``wav48*/<speaker>/<id>[_mic1].(wav|flac)``.

Release 0.80 has ``wav48/p225/p225_001.wav``; release 0.92 has
``wav48_silence_trimmed/p225/p225_001_mic1.flac`` and ``..._mic2.flac`` (two
microphones; ``--mic`` picks one, default ``mic1``). Audio without a transcript (all of
speaker p315) and transcripts without audio are reported.

VCTK has no official split. ``--split-by speaker`` (the default) puts whole speakers in
train, dev and test, so the test set measures unseen voices; ``--split-by utterance``
spreads each speaker over all three (seen voices, unseen sentences; VCTK speakers read
largely the same sentences, so test sentences then also occur in training).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from npspeech.errors import DataError

from .common import Found, Item, Problem, read_text, require_folder, seeded_split

NAME = "vctk"
HELP = "VCTK: txt/ + wav48*/, seeded split by speaker or utterance"
AUDIO_SUFFIXES = (".wav", ".flac")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--split-by`` and ``--mic``."""
    parser.add_argument(
        "--split-by",
        choices=("speaker", "utterance"),
        default="speaker",
        help="seeded split of whole speakers (unseen voices in test; default) or of "
        "utterances",
    )
    parser.add_argument(
        "--mic",
        choices=("mic1", "mic2"),
        default="mic1",
        help="microphone of release 0.92's two recordings (default mic1)",
    )


def find(source: Path, options: argparse.Namespace) -> Found:
    """Transcripts paired with audio of one microphone, split by speaker or
    utterance.
    """
    require_folder(source / "txt", "a VCTK folder holding txt/ and wav48*/")
    folders = sorted(p for p in source.glob("wav48*") if p.is_dir())
    if len(folders) != 1:
        found = ", ".join(p.name for p in folders) or "none"
        raise DataError(f"{source}: expected one wav48* audio folder, found {found}")
    audio_by_key = {}
    for path in sorted(folders[0].rglob("*")):
        if path.suffix.lower() not in AUDIO_SUFFIXES or not path.is_file():
            continue
        stem = path.stem
        if stem.endswith(("_mic1", "_mic2")):
            if not stem.endswith("_" + options.mic):
                continue
            stem = stem[: -len("_mic1")]
        audio_by_key[stem] = path
    problems: list[Problem] = []
    texts, unreadable = {}, set()
    for path in sorted((source / "txt").rglob("*.txt")):
        try:
            texts[path.stem] = (read_text(path), str(path))
        except DataError as error:
            unreadable.add(path.stem)
            problems.append(Problem("", str(path), "unreadable_transcript", str(error)))
    # Only utterances with a transcript take part in the split, so a speaker without
    # any (p315) does not take a place in dev or test.
    keys = sorted(texts)
    groups = {key: key.split("_")[0] for key in keys}  # "p225_001" -> "p225"
    if options.split_by == "utterance":
        groups = {key: key for key in keys}
    split_of_group = seeded_split(
        groups.values(), options.seed, options.dev_fraction, options.test_fraction
    )
    for key in sorted(set(audio_by_key) - set(texts) - unreadable):
        speaker = key.split("_")[0]
        message = f"no transcript txt/{speaker}/{key}.txt"
        audio = str(audio_by_key[key])
        problems.append(Problem("", audio, "missing_transcript", message))
    items = []
    for key in keys:
        split, speaker = split_of_group[groups[key]], key.split("_")[0]
        text, where = texts[key]
        if key not in audio_by_key:
            message = f"no audio for {key} in {folders[0]}"
            problems.append(Problem(split, where, "missing_audio", message))
            continue
        items.append(Item(f"{speaker}/{key}", split, audio_by_key[key], text, where))
    return Found(items, problems, ["train", "dev", "test"])
