"""`npspeech eval`: word and character error rates of a model on corpus CSVs.

Prints the corpus WER and CER and the worst utterances; `--report` writes a JSON
report with every utterance's reference, hypothesis, CTC loss and error counts
(atomically).
"""

from __future__ import annotations

import argparse
from typing import Any


def add_decoder_options(parser: argparse.ArgumentParser) -> None:
    """The decoder options ``eval`` and ``decode`` share."""
    from .. import constants as C

    group = parser.add_argument_group("decoding")
    group.add_argument(
        "--decoder",
        choices=("greedy", "beam"),
        default="greedy",
        help="best path, or prefix beam search (default: greedy)",
    )
    group.add_argument(
        "--beam-width",
        type=int,
        default=C.BEAM_WIDTH,
        help=f"prefixes kept per frame (default: {C.BEAM_WIDTH})",
    )
    group.add_argument(
        "--cutoff-top-n",
        type=int,
        default=C.CUTOFF_TOP_N,
        help=f"classes considered per frame (default: {C.CUTOFF_TOP_N})",
    )
    group.add_argument(
        "--cutoff-prob",
        type=float,
        default=C.CUTOFF_PROB,
        help=f"cumulative probability pruning (default: {C.CUTOFF_PROB})",
    )
    group.add_argument(
        "--scorer",
        metavar="FILE",
        help="KenLM scorer for the beam decoder: DeepSpeech .scorer, ARPA "
        "or KenLM binary (default: none)",
    )
    group.add_argument(
        "--alpha", type=float, help="language model weight (default: the scorer's own)"
    )
    group.add_argument(
        "--beta", type=float, help="word insertion bonus (default: the scorer's own)"
    )
    group.add_argument(
        "--hotwords",
        nargs="+",
        default=[],
        metavar="WORD[:BOOST]",
        help=f"words to boost in the beam decoder (default: none; boost "
        f"{C.HOTWORD_BOOST} when not given)",
    )


def decode_config_from(args: argparse.Namespace) -> Any:
    """A :class:`~npspeech.config.DecodeConfig` from the decoder options."""
    from ..config import DecodeConfig
    from ..errors import ConfigError

    if args.decoder == "greedy" and (args.scorer or args.hotwords):
        raise ConfigError("--scorer and --hotwords need --decoder beam")
    return DecodeConfig(
        decoder=args.decoder,
        beam_width=args.beam_width,
        cutoff_top_n=args.cutoff_top_n,
        cutoff_prob=args.cutoff_prob,
        scorer=args.scorer or "",
        alpha=args.alpha,
        beta=args.beta,
        hotwords=tuple(args.hotwords),
    )


def register(subparsers: Any) -> None:
    """Add the ``eval`` subcommand."""
    parser = subparsers.add_parser(
        "eval", help="WER/CER of a model on corpus CSVs", description=__doc__
    )
    parser.add_argument(
        "--model",
        required=True,
        metavar="MODEL",
        help="model file (model.npz of a training run)",
    )
    parser.add_argument(
        "--csv",
        required=True,
        nargs="+",
        metavar="CSV",
        help="DeepSpeech corpus CSVs to score",
    )
    parser.add_argument(
        "--report",
        metavar="OUT.json",
        help="write a JSON report with every utterance (default: none)",
    )
    parser.add_argument(
        "--worst",
        type=int,
        default=5,
        help="print this many worst utterances (default: 5)",
    )
    parser.add_argument(
        "--skip-bad-rows",
        action="store_true",
        help="skip rows that fail validation (default: stop and list them)",
    )
    parser.add_argument(
        "--batch-frames",
        type=int,
        default=16_000,
        help="padded frames per batch (default: 16000)",
    )
    parser.add_argument(
        "--backend",
        choices=("numpy", "numba", "cupy"),
        default=None,
        help="kernel backend (default: $NPSPEECH_BACKEND or numba)",
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar (default: show it)"
    )
    add_decoder_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``npspeech eval``."""
    import json

    from .. import data
    from ..fileio import write_text_atomically
    from ..inference import Model, evaluate

    decode_config = decode_config_from(args)
    model = Model.load(args.model, backend=args.backend)
    utterances, durations = data.validate_corpus(
        data.read_csvs(args.csv),
        model.alphabet,
        model.features,
        skip_bad=args.skip_bad_rows,
        progress=not args.no_progress,
    )
    result = evaluate(
        model.network,
        utterances,
        model.alphabet,
        model.features,
        frames_budget=args.batch_frames,
        decode_config=decode_config,
        backend=args.backend,
        durations=durations,
        progress=not args.no_progress,
    )
    print(
        f"{len(result.utterances)} utterances: WER {result.wer:.4f}, "
        f"CER {result.cer:.4f}, mean CTC loss {result.loss:.3f}"
    )
    for row in result.worst(max(args.worst, 0)):
        print(f"  {row.source}  WER {row.wer:.3f}  CER {row.cer:.3f}")
        print(f"    ref: {row.reference}")
        print(f"    hyp: {row.hypothesis}")
    if args.report:
        report = result.to_json()
        report.update(
            model=str(args.model),
            csv=[str(path) for path in args.csv],
            decoder=args.decoder,
        )
        write_text_atomically(args.report, json.dumps(report, indent=2) + "\n")
        print(f"report: {args.report}")
    return 0
