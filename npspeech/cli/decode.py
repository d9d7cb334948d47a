"""`npspeech decode`: transcribe audio files (or the rows of a corpus CSV).

Prints one transcript per file, or with `--json` one JSON object per file in the
format of DeepSpeech's client (`{"transcripts": [{"confidence", "words": [{"word",
"start_time", "duration"}]}]}`) with an added `"audio"` field naming the file.
"""

from __future__ import annotations

import argparse
from typing import Any

from .eval import add_decoder_options, decode_config_from


def register(subparsers: Any) -> None:
    """Add the ``decode`` subcommand."""
    parser = subparsers.add_parser(
        "decode", help="transcribe audio files", description=__doc__
    )
    parser.add_argument(
        "audio",
        nargs="*",
        metavar="AUDIO",
        help="audio files (WAV, FLAC, ...; resampled to the model's rate)",
    )
    parser.add_argument("--model", required=True, metavar="MODEL", help="model file")
    parser.add_argument(
        "--csv",
        nargs="+",
        default=[],
        metavar="CSV",
        help="also transcribe every row of these corpus CSVs (default: none)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="DeepSpeech's JSON output with word timings (default: text)",
    )
    parser.add_argument(
        "--candidate-transcripts",
        type=int,
        default=3,
        help="transcripts per file with --json and the beam decoder "
        "(default: 3, as DeepSpeech's client)",
    )
    parser.add_argument(
        "--backend",
        choices=("numpy", "numba", "cupy"),
        default=None,
        help="kernel backend (default: $NPSPEECH_BACKEND or numba)",
    )
    add_decoder_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``npspeech decode``."""
    import json

    from ..errors import ConfigError
    from ..inference import Model

    paths = list(args.audio)
    if args.csv:
        from ..data import read_csvs

        paths += [str(utterance.audio_path) for utterance in read_csvs(args.csv)]
    if not paths:
        raise ConfigError("nothing to decode: give AUDIO files or --csv")
    model = Model.load(args.model, backend=args.backend)
    model.set_decoder(decode_config_from(args))
    n_best = max(args.candidate_transcripts, 1) if args.json else 1
    for path in paths:
        candidates = model.transcribe_full(path, n_best=n_best)
        if args.json:
            output = {
                "audio": str(path),
                "transcripts": [
                    candidate.to_deepspeech_dict() for candidate in candidates
                ],
            }
            print(json.dumps(output))
        else:
            print(
                candidates[0].text
                if len(paths) == 1
                else f"{path}\t{candidates[0].text}"
            )
    return 0
