"""`npspeech eval`: word and character error rates of a model on corpus CSVs.

Prints the corpus WER and CER and the worst utterances; `--report` writes a JSON
report with every utterance's reference, hypothesis, CTC loss and error counts
(atomically).
"""

from __future__ import annotations

import argparse
from typing import Any

#: Options of the beam search: given with the default decoder, they choose it.
BEAM_OPTIONS = (
    ("beam_width", "--beam-width"),
    ("cutoff_top_n", "--cutoff-top-n"),
    ("cutoff_prob", "--cutoff-prob"),
    ("scorer", "--scorer"),
    ("alpha", "--alpha"),
    ("beta", "--beta"),
    ("hotwords", "--hotwords"),
    ("hot_words", "--hot_words"),
)


def add_decoder_options(
    parser: argparse.ArgumentParser, deepspeech_aliases: bool = False
) -> None:
    """The decoder options ``eval`` and ``decode`` share.

    With ``deepspeech_aliases`` the spellings of DeepSpeech's client are accepted too:
    ``--beam_width``, ``--lm_alpha``, ``--lm_beta`` and ``--hot_words "a:1.5,b:2"``.
    """
    from .. import constants as C

    def spellings(*names: str) -> tuple[str, ...]:
        return names if deepspeech_aliases else names[:1]

    group = parser.add_argument_group("decoding")
    group.add_argument(
        "--decoder",
        choices=("greedy", "beam"),
        default=None,
        help="best path, or prefix beam search (default: beam when a beam option "
        "below is given, else greedy)",
    )
    group.add_argument(
        *spellings("--beam-width", "--beam_width"),
        dest="beam_width",
        type=int,
        default=None,
        help=f"prefixes kept per frame (default: {C.BEAM_WIDTH})",
    )
    group.add_argument(
        "--cutoff-top-n",
        type=int,
        default=None,
        help=f"classes considered per frame (default: {C.CUTOFF_TOP_N})",
    )
    group.add_argument(
        "--cutoff-prob",
        type=float,
        default=None,
        help=f"cumulative probability pruning (default: {C.CUTOFF_PROB})",
    )
    group.add_argument(
        "--scorer",
        metavar="FILE",
        help="KenLM scorer for the beam decoder: DeepSpeech .scorer, npspeech "
        "package, ARPA or KenLM binary, or `bundled` for the bundled model's "
        "(default: none; the bundled model's own when --model is left out)",
    )
    group.add_argument(
        *spellings("--alpha", "--lm_alpha"),
        dest="alpha",
        type=float,
        help="language model weight, >= 0; needs --scorer (default: the scorer's own)",
    )
    group.add_argument(
        *spellings("--beta", "--lm_beta"),
        dest="beta",
        type=float,
        help="word insertion bonus, >= 0; needs --scorer (default: the scorer's own)",
    )
    group.add_argument(
        "--hotwords",
        action="append",
        default=[],
        metavar="WORD[:BOOST]",
        help=f"a word to boost in the beam decoder; one per flag, repeat the flag "
        f"for more (default: none; boost {C.HOTWORD_BOOST} when not given)",
    )
    if deepspeech_aliases:
        group.add_argument(
            "--hot_words",
            action="append",
            default=[],
            metavar="WORD:BOOST,...",
            help="DeepSpeech's spelling: comma-separated WORD:BOOST pairs "
            "(default: none)",
        )


def resolve_model_option(args: argparse.Namespace) -> None:
    """Turn ``--model`` left out, ``bundled`` or ``bundled:NAME`` into the bundled
    model's file, and give the search its scorer unless the options decide otherwise
    (``--scorer`` given, or ``--decoder greedy``); ``--scorer bundled`` names the
    bundled model's scorer for any model. Paths are left as they are."""
    from ..bundled import resolve_model, resolve_scorer

    args.model, bundled = resolve_model(args.model)
    if args.scorer:
        args.scorer = resolve_scorer(args.scorer)  # `bundled`: the bundled scorer
    elif bundled is not None and bundled.scorer_path is not None:
        if args.decoder != "greedy":
            args.scorer = str(bundled.scorer_path)


def decode_config_from(args: argparse.Namespace) -> Any:
    """A :class:`~npspeech.config.DecodeConfig` from the decoder options.

    Raises
    ------
    ConfigError
        Options that would do nothing (beam options with ``--decoder greedy``,
        ``--alpha``/``--beta`` without a scorer) or values out of range.
    """
    from ..config import DecodeConfig
    from ..errors import ConfigError

    given = [
        flag
        for dest, flag in BEAM_OPTIONS
        if getattr(args, dest, None) not in (None, "", [])
    ]
    decoder = args.decoder or ("beam" if given else "greedy")
    if decoder == "greedy" and given:
        raise ConfigError(
            f"{', '.join(given)} only apply to the beam decoder, not --decoder greedy"
        )
    if (args.alpha is not None or args.beta is not None) and not args.scorer:
        raise ConfigError("--alpha and --beta weigh a language model: give --scorer")
    for name, value in (("--alpha", args.alpha), ("--beta", args.beta)):
        if value is not None and not value >= 0:
            raise ConfigError(f"{name} {value}: give a weight >= 0")
    if args.beam_width is not None and args.beam_width < 1:
        raise ConfigError(f"--beam-width {args.beam_width}: give 1 or more")
    if args.cutoff_top_n is not None and args.cutoff_top_n < 1:
        raise ConfigError(f"--cutoff-top-n {args.cutoff_top_n}: give 1 or more")
    if args.cutoff_prob is not None and not 0 < args.cutoff_prob <= 1:
        raise ConfigError(f"--cutoff-prob {args.cutoff_prob}: give a value in (0, 1]")
    hotwords = list(args.hotwords)
    for pairs in getattr(args, "hot_words", []):
        for pair in pairs.split(","):
            word, colon, boost = pair.partition(":")
            if not (word.strip() and colon and boost.strip()):
                raise ConfigError(f"--hot_words {pairs!r}: {pair!r} is not WORD:BOOST")
            hotwords.append(f"{word.strip()}:{boost.strip()}")
    set_values = {
        name: getattr(args, name)
        for name in ("beam_width", "cutoff_top_n", "cutoff_prob")
        if getattr(args, name) is not None
    }
    return DecodeConfig(
        decoder=decoder,
        **set_values,
        scorer=args.scorer or "",
        alpha=args.alpha,
        beta=args.beta,
        hotwords=tuple(hotwords),
    )


def register(subparsers: Any) -> None:
    """Add the ``eval`` subcommand."""
    parser = subparsers.add_parser(
        "eval", help="WER/CER of a model on corpus CSVs", description=__doc__
    )
    parser.add_argument(
        "--model",
        metavar="MODEL",
        help="model file (model.npz of a training run), or bundled:NAME (default: "
        "the bundled model, with its scorer unless --decoder greedy or --scorer is "
        "given; see `npspeech models`)",
    )
    parser.add_argument(
        "--csv",
        required=True,
        action="append",
        metavar="CSV",
        help="a DeepSpeech corpus CSV to score; repeat the flag for more",
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

    from ..fileio import write_text_atomically
    from ..inference import Model

    resolve_model_option(args)
    decode_config = decode_config_from(args)
    model = Model.load(args.model, backend=args.backend)
    result = model.evaluate_csvs(
        args.csv,
        decode_config,
        skip_bad=args.skip_bad_rows,
        frames_budget=args.batch_frames,
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
            decoder=decode_config.decoder,
        )
        write_text_atomically(args.report, json.dumps(report, indent=2) + "\n")
        print(f"report: {args.report}")
    return 0
