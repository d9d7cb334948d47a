"""`npspeech quantize`: an int8 copy of a model file.

Every weight matrix (dense, recurrent, convolution) is stored as int8 with one float32
scale per output channel (see :mod:`npspeech.quantize`); the file is about a quarter of
the float32 one and loads like any other model (``npspeech decode --model``).
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``quantize`` subcommand."""
    parser = subparsers.add_parser(
        "quantize",
        help="write an int8 copy of a model file",
        description=(
            "Write an int8 copy of MODEL: every weight matrix as int8 with one "
            "float32 scale per output channel (symmetric), activations computed in "
            "float32. The copy loads and decodes like any model file."
        ),
    )
    parser.add_argument(
        "model",
        metavar="MODEL",
        help="a float32 npspeech model file, or `bundled` (bundled:NAME) for a model "
        "shipped with npspeech",
    )
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="MODEL_INT8",
        help="where to write the int8 model (written atomically)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace MODEL_INT8 if it exists (default: refuse)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Quantise ``args.model`` into ``args.output``; prints both sizes."""
    import os

    from ..bundled import resolve_model
    from ..quantize import quantize_file

    model, _ = resolve_model(args.model)
    written = quantize_file(model, args.output, overwrite=args.overwrite)
    before, after = os.path.getsize(model), os.path.getsize(written)
    print(
        f"wrote {written} ({after / 2**20:.2f} MiB, {after / before:.2f}x of "
        f"{before / 2**20:.2f} MiB)"
    )
    return 0
