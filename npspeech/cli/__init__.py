"""The ``npspeech`` command line: argparse subcommands, no numerics.

Each subcommand lives in its own module of this package and provides two functions:

- ``register(subparsers)``: adds its parser (with ``--help`` text for every option);
- ``run(args) -> int``: does the work through the library API and returns the exit code.

Command modules import numerical code inside ``run`` so that
``npspeech --help`` is instant: building the parser imports none of NumPy, Numba,
SciPy, KenLM or Matplotlib (``tests/test_startup.py``), and the version is looked up
only for ``--version``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from ..errors import NpspeechError

#: Subcommand modules, in the order ``--help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "lm",
    "train",
    "eval",
    "decode",
    "quantize",
    "bench",
    "models",
)

EXIT_OK = 0
EXIT_ERROR = 1  # the input or the environment was at fault; the message says how
EXIT_USAGE = 2  # argparse's own code for a bad command line
EXIT_INTERRUPTED = 130


class _VersionAction(argparse.Action):
    """``--version``: reads the installed version when asked, not when the parser is
    built (``importlib.metadata`` alone costs tens of milliseconds to import)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS)
        self.help = "show the version and exit"

    def __call__(self, parser, namespace, values, option_string=None):
        from .. import __version__

        print(f"npspeech {__version__}")  # on stdout, as argparse's own action
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="npspeech",
        description=(
            "Framework-free speech-to-text: train, decode and evaluate "
            "DeepSpeech-compatible models with NumPy, Numba and Cython."
        ),
        epilog="Run `npspeech COMMAND --help` for the options of a command.",
    )
    parser.add_argument("--version", action=_VersionAction)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code (never raises
    for bad input).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "run", None) is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.run(args) or EXIT_OK)
    except NpspeechError as error:
        print(f"npspeech {args.command}: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"npspeech {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # the reader of stdout has gone (`npspeech models | head`): stop quietly
        silence_stdout()
        return EXIT_OK


def silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush of the text
    still buffered for a closed pipe does not fail again at exit."""
    try:
        descriptor = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (tests)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, descriptor)
    os.close(devnull)
