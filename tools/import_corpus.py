"""Import a speech corpus into DeepSpeech CSVs with 16 kHz mono 16-bit WAV audio.

    python -m tools.import_corpus LAYOUT SRC DEST [--alphabet alphabet.txt] [--jobs N]

LAYOUT is one of ``librispeech``, ``common-voice``, ``ljspeech``, ``vctk``,
``speech-commands`` or ``folder``; ``python -m tools.import_corpus LAYOUT --help`` lists
its options. DEST receives ``wav/``, one CSV per split and ``import_report.csv`` (the
rows that could not be used, and why). Running it again converts only what is missing
or incomplete.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: python tools/import_corpus.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from npspeech.alphabet import Alphabet, english  # noqa: E402
from npspeech.errors import NpspeechError  # noqa: E402
from tools.importers import LAYOUTS, SEEDED  # noqa: E402
from tools.importers.common import run_import  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    """The command line: a sub-command per layout, shared options on each."""
    parser = argparse.ArgumentParser(
        prog="import_corpus",
        description="Convert a speech corpus to DeepSpeech CSVs and 16 kHz WAV.",
    )
    layouts = parser.add_subparsers(dest="layout", required=True, metavar="LAYOUT")
    for name, module in LAYOUTS.items():
        sub = layouts.add_parser(name, help=module.HELP, description=module.__doc__)
        sub.add_argument("source", type=Path, metavar="SRC", help="the corpus folder")
        sub.add_argument("destination", type=Path, metavar="DEST", help="output folder")
        sub.add_argument(
            "--alphabet",
            type=Path,
            help="alphabet.txt the transcripts are normalised to (default: "
            "DeepSpeech's English alphabet: a-z, space and apostrophe)",
        )
        sub.add_argument(
            "--jobs",
            type=int,
            default=os.cpu_count() or 1,
            help="audio conversion processes (default: the CPU count)",
        )
        sub.add_argument(
            "--no-progress", action="store_true", help="hide the progress bar"
        )
        if name in SEEDED:
            sub.add_argument(
                "--seed", type=int, default=0, help="seed of the split (default 0)"
            )
            sub.add_argument(
                "--dev-fraction",
                type=float,
                default=0.05,
                help="share of the corpus in dev (default 0.05)",
            )
            sub.add_argument(
                "--test-fraction",
                type=float,
                default=0.05,
                help="share of the corpus in test (default 0.05)",
            )
        module.add_arguments(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the importer: 0 on success, 1 when no row was usable (the report says
    why), 2 with a message when the import cannot run.
    """
    options = build_parser().parse_args(argv)
    try:
        if options.jobs < 1:
            raise NpspeechError(f"--jobs must be at least 1, got {options.jobs}")
        alphabet = (
            Alphabet.from_file(options.alphabet) if options.alphabet else english()
        )
        found = LAYOUTS[options.layout].find(options.source, options)
        if not found.items and not found.problems:
            raise NpspeechError(
                f"{options.source}: no {options.layout} utterances found"
            )
        result = run_import(
            found.items,
            found.problems,
            options.destination,
            alphabet,
            jobs=options.jobs,
            progress=not options.no_progress,
            splits=found.splits,
        )
    except NpspeechError as error:
        print(f"import_corpus: error: {error}", file=sys.stderr)
        return 2
    print(result.summary())
    # Every row unusable is almost always a wrong layout, alphabet or folder.
    return 0 if sum(result.rows.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
