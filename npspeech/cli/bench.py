"""`npspeech bench`: real-time factors of this install on this machine.

Times the front end, the acoustic model (batched offline, and streamed in 1 s chunks
at batch 1), the decoders (best path, beam, beam with a KenLM scorer) and the whole
pipeline, on every installed backend, for a model file or a freshly initialised
DeepSpeech-shaped network; then reports peak memory, thread counts, and the JIT
compile time of a first transcription with an empty and with a warm Numba cache.
The audio is synthetic; what is measured is speed, not accuracy.
"""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``bench`` subcommand."""
    parser = subparsers.add_parser(
        "bench",
        help="measure real-time factors on this machine",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--model", metavar="MODEL", default="", help="model file to time (default: "
        "an initialised DeepSpeech network of --width)",
    )  # fmt: skip
    source.add_argument(
        "--width",
        default="small",
        metavar="WIDTH",
        help="hidden width of the initialised network: tiny (64), small (512), "
        "medium (1024), large (2048, DeepSpeech 0.9) or a number (default: small)",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="seconds of audio per utterance (default: 5; 2 with --quick)",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=None,
        help="utterances in the batched offline run (default: 4; 2 with --quick)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed runs per figure, the median reported (default: 3; 1 with --quick)",
    )
    parser.add_argument(
        "--backend",
        action="append",
        choices=("numba", "numpy"),
        default=None,
        help="backend to time; repeat for several (default: every one that imports)",
    )
    parser.add_argument(
        "--scorer",
        default="",
        metavar="SCORER",
        help="scorer for the beam + LM decoder (default: DeepSpeech's small scorer "
        "from $NPSPEECH_DATA when present, else a tiny 3-gram built on the spot)",
    )
    parser.add_argument(
        "--beam-width",
        type=int,
        default=None,
        help="beam width of both beam decoders (default: the decoder's default; "
        "100 with --quick)",
    )
    parser.add_argument(
        "--no-compile-time",
        action="store_true",
        help="skip the cold and warm first-run measurements in fresh interpreters "
        "(default: measure them)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a short run for CI: 2 s of audio, batch 2, one repeat, width tiny "
        "unless --model or --width is given (default: off)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the report as JSON (default: table)"
    )
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar on stderr (default: shown)",
    )
    parser.set_defaults(run=run)


def settings_from(args: argparse.Namespace) -> Any:
    """The :class:`npspeech.bench.BenchSettings` the command line asks for."""
    from ..bench import BACKENDS, BenchSettings
    from ..constants import BEAM_WIDTH

    quick = bool(args.quick)

    def pick(value, normal, short):
        return value if value is not None else (short if quick else normal)

    width = args.width
    if quick and width == "small" and not args.model:
        width = "tiny"
    return BenchSettings(
        model=args.model,
        width=width,
        seconds=pick(args.seconds, 5.0, 2.0),
        batch=pick(args.batch, 4, 2),
        repeats=pick(args.repeats, 3, 1),
        backends=tuple(dict.fromkeys(args.backend)) if args.backend else BACKENDS,
        scorer=args.scorer,
        beam_width=pick(args.beam_width, BEAM_WIDTH, 100),
        compile_time=not args.no_compile_time,
        progress=not args.no_progress,
    )


def run(args: argparse.Namespace) -> int:
    """Run ``npspeech bench``."""
    import json

    from ..bench import format_table
    from ..bench import run as run_bench
    from ..jit_notice import announce_compilation

    settings = settings_from(args)
    announce_compilation()  # the warm-up calls compile on a fresh install
    report = run_bench(settings)
    print(json.dumps(report, indent=2) if args.json else format_table(report))
    return 0
