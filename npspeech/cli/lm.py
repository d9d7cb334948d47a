"""``npspeech lm``: build ARPA models, inspect and package scorers, tune alpha/beta.

Subcommands: ``build``, ``info``, ``package``, ``tune``, and for domain adaptation
``mix`` (linear interpolation with EM-tuned weights), ``prune`` (relative entropy, to a
size budget) and ``eval`` (perplexity and OOV rate). Numerical modules are imported
inside the handlers so that ``npspeech --help`` stays instant.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from .. import constants as C
from ..errors import ConfigError


def register(subparsers) -> None:
    """Add ``npspeech lm`` and its subcommands."""
    parser = subparsers.add_parser(
        "lm",
        help="build, adapt, prune, evaluate, package and tune language models",
        description=(
            "Language-model tooling: build an ARPA n-gram model from text, combine a "
            "general model with in-domain ones (mix), prune to a size budget, measure "
            "perplexity and OOV rate (eval), show what a scorer file holds, package an "
            "LM with its alpha/beta, and tune alpha/beta on a dev set."
        ),
    )
    parser.set_defaults(run=lambda args: _print_help(parser))
    commands = parser.add_subparsers(dest="lm_command", metavar="SUBCOMMAND")
    _register_build(commands)
    _register_info(commands)
    _register_package(commands)
    _register_tune(commands)
    _register_mix(commands)
    _register_prune(commands)
    _register_eval(commands)


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _register_build(commands) -> None:
    parser = commands.add_parser(
        "build",
        help="build an ARPA model (interpolated modified Kneser-Ney) from text",
        description=(
            "Build an ARPA n-gram model from text files (one sentence per line, "
            "plain or gzip), with interpolated modified Kneser-Ney smoothing as "
            "KenLM's lmplz estimates it. Text is normalised to the alphabet first "
            "(lower-cased, accents folded, other characters dropped). Never build "
            "from test transcripts: the LM would have seen the test set."
        ),
    )
    parser.add_argument(
        "text",
        nargs="+",
        metavar="TEXT",
        help="input text files (.gz ok) or corpus CSVs (their transcript column)",
    )
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="LM.arpa",
        help="ARPA file to write (atomically; required)",
    )
    parser.add_argument(
        "--order",
        type=int,
        default=C.LM_ORDER,
        help="highest n-gram order (default: %(default)s)",
    )
    parser.add_argument(
        "--prune",
        type=int,
        nargs="+",
        default=None,
        metavar="COUNT",
        help="raw-count thresholds per order, unigrams first (like lmplz "
        "--prune): n-grams with count <= threshold are dropped; the last "
        "value repeats; the first must be 0. Default: no pruning",
    )
    parser.add_argument(
        "--vocab-size",
        type=int,
        default=None,
        metavar="K",
        help="keep the K most frequent words, the rest become <unk>. Default: keep all",
    )
    parser.add_argument(
        "--alphabet",
        default=None,
        metavar="alphabet.txt",
        help="DeepSpeech alphabet to normalise text to. Default: English "
        "(space, a-z, apostrophe)",
    )
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar (shown for inputs over 16 MiB)",
    )
    parser.set_defaults(run=run_build)


def _register_info(commands) -> None:
    parser = commands.add_parser(
        "info",
        help="show the kind, order, alpha/beta and vocabulary size of a scorer",
        description="Show what a language-model file holds: ARPA, KenLM binary, "
        "DeepSpeech .scorer or npspeech scorer package.",
    )
    parser.add_argument("scorer", metavar="SCORER", help="the file to inspect")
    parser.add_argument(
        "--alphabet",
        default=None,
        metavar="alphabet.txt",
        help="alphabet that spells a DeepSpeech scorer's lexicon. Default: English",
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object instead of lines"
    )
    parser.set_defaults(run=run_info)


def _register_package(commands) -> None:
    parser = commands.add_parser(
        "package",
        help="wrap an ARPA/KenLM model with alpha, beta and vocabulary in one file",
        description="Write an npspeech scorer package: the LM bytes, its alpha/beta "
        "and vocabulary, behind a small header (see npspeech.lm.package).",
    )
    parser.add_argument(
        "language_model",
        metavar="LM",
        help="ARPA file, KenLM binary or DeepSpeech .scorer",
    )
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT.npscorer",
        help="package to write (atomically; required)",
    )
    parser.add_argument(
        "--alpha",
        type=float,
        default=None,
        help="LM weight to store. Default: the source's, else none",
    )
    parser.add_argument(
        "--beta",
        type=float,
        default=None,
        help="word bonus to store. Default: the source's, else none",
    )
    parser.add_argument(
        "--alphabet",
        default=None,
        metavar="alphabet.txt",
        help="alphabet of a DeepSpeech scorer's lexicon. Default: English",
    )
    parser.set_defaults(run=run_package)


def _register_tune(commands) -> None:
    parser = commands.add_parser(
        "tune",
        help="grid-search alpha/beta on a dev set and store them in the scorer",
        description=(
            "Search the beam decoder's alpha (LM weight) and beta (word bonus) that "
            "minimise corpus WER on a dev set, then write them into the scorer: an "
            "npspeech package gets new metadata, a DeepSpeech .scorer a new header, "
            "an ARPA/KenLM file becomes an npspeech package at --output. The dev set "
            "is either a model and its dev CSVs (--model M --dev CSV...), run once, or "
            "an .npz of acoustic-model outputs (arrays log_probs_0.. of shape "
            "(T, V) and a string array 'references'; see "
            "npspeech.lm.tune.save_log_probs)."
        ),
    )
    parser.add_argument("scorer", metavar="SCORER", help="scorer or LM file to tune")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--log-probs",
        metavar="DEV.npz",
        help="dev-set log-probabilities and references, saved earlier",
    )
    source.add_argument(
        "--model",
        metavar="MODEL",
        help="an npspeech model file, or `bundled` (bundled:NAME) for a model "
        "shipped with npspeech: run it once over --dev to get the log-probabilities",
    )
    parser.add_argument(
        "--dev",
        nargs="+",
        metavar="CSV",
        help="DeepSpeech CSV(s) of the dev set (with --model)",
    )
    parser.add_argument(
        "-o",
        "--output",
        default=None,
        metavar="OUT",
        help="where to write the tuned scorer. Default: SCORER itself "
        "(rewritten atomically); required for ARPA/KenLM input",
    )
    parser.add_argument(
        "--alphabet",
        default=None,
        metavar="alphabet.txt",
        help="the acoustic model's alphabet. Default: English",
    )
    parser.add_argument(
        "--alphas",
        type=float,
        nargs="+",
        default=None,
        metavar="A",
        help=f"alpha grid. Default: --grid-points values over {C.TUNE_ALPHA_RANGE}",
    )
    parser.add_argument(
        "--betas",
        type=float,
        nargs="+",
        default=None,
        metavar="B",
        help=f"beta grid. Default: --grid-points values over {C.TUNE_BETA_RANGE}",
    )
    parser.add_argument(
        "--grid-points",
        type=int,
        default=C.TUNE_GRID_POINTS,
        help="points per axis of the default grids (default: %(default)s)",
    )
    parser.add_argument(
        "--refine",
        type=int,
        default=0,
        metavar="STEPS",
        help="coarse-to-fine rounds around the best point (each halves "
        "the step; default: %(default)s)",
    )
    parser.add_argument(
        "--beam-width",
        type=int,
        default=C.TUNE_BEAM_WIDTH,
        help="beam width while tuning (default: %(default)s)",
    )
    parser.add_argument(
        "--table",
        default=None,
        metavar="FILE.csv",
        help="also write every evaluated point as CSV",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="report the best alpha/beta without writing the scorer",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=run_tune)


def _add_alphabet(parser) -> None:
    parser.add_argument(
        "--alphabet",
        default=None,
        metavar="alphabet.txt",
        help="alphabet the text is normalised to, as in 'lm build'. Default: English",
    )


def _register_mix(commands) -> None:
    parser = commands.add_parser(
        "mix",
        help="interpolate ARPA models, weights tuned by EM on dev text",
        description=(
            "Linearly interpolate two or more ARPA models (P = sum_i w_i P_i, each "
            "with its own backoff; union of their n-grams, backoffs recomputed so the "
            "result normalises), as SRILM's -mix-lm and KenLM's interpolate do. The "
            "weights minimise the dev text's perplexity (EM), or are given. Typical "
            "use: a general model and one built from in-domain text."
        ),
    )
    parser.add_argument(
        "models", nargs="+", metavar="MODEL", help="ARPA files (.gz ok), two or more"
    )
    parser.add_argument(
        "--dev",
        nargs="+",
        metavar="TEXT",
        help="dev text (text files, .gz, or corpus CSVs) to tune the weights on; "
        "never the test set",
    )
    parser.add_argument(
        "--weights",
        type=float,
        nargs="+",
        metavar="W",
        help="one weight per model (positive, summing to 1) instead of tuning",
    )
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="MIXED.arpa",
        help="ARPA file to write (atomically; required)",
    )
    _add_alphabet(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(run=run_mix)


def _register_prune(commands) -> None:
    parser = commands.add_parser(
        "prune",
        help="prune an ARPA model by relative entropy to a size budget",
        description=(
            "Remove the n-grams (order 2 and up) whose removal changes the model "
            "least (Stolcke's relative-entropy pruning, as SRILM's -prune), keep the "
            "prefixes and suffixes of what stays, and recompute the backoffs so the "
            "model still normalises. Give one budget: --max-size (bytes of the ARPA "
            "file), --max-package-size (bytes of the scorer package 'lm package' "
            "makes of it), --max-ngrams, or a --threshold."
        ),
    )
    parser.add_argument("model", metavar="MODEL", help="ARPA file (.gz ok)")
    budget = parser.add_mutually_exclusive_group(required=True)
    budget.add_argument(
        "--max-size",
        metavar="SIZE",
        help="largest ARPA file size, e.g. 10MB, 500kB, 8MiB or bytes",
    )
    budget.add_argument(
        "--max-package-size",
        metavar="SIZE",
        help="largest npspeech scorer package that 'lm package' makes of the "
        "result (the ARPA budget less the package's word list and header)",
    )
    budget.add_argument(
        "--max-ngrams", type=int, metavar="N", help="largest number of n-grams"
    )
    budget.add_argument(
        "--threshold",
        type=float,
        metavar="D",
        help="remove n-grams whose relative entropy D (nats, P(h)-weighted) is below D",
    )
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="PRUNED.arpa",
        help="ARPA file to write (atomically; required)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(run=run_prune)


def _register_eval(commands) -> None:
    parser = commands.add_parser(
        "eval",
        help="perplexity and out-of-vocabulary rate of text under a model",
        description=(
            "Score text as kenlm.Model.score does (<s> ... </s> per sentence, unknown "
            "words as <unk>) and report the perplexity with and without "
            "out-of-vocabulary words and the OOV rate, as KenLM's query does. Text "
            "is normalised to the alphabet first, as 'lm build' does."
        ),
    )
    parser.add_argument(
        "model", metavar="MODEL", help="ARPA file (.gz ok) or npspeech package of one"
    )
    parser.add_argument(
        "--text",
        nargs="+",
        required=True,
        metavar="TEXT",
        help="text files (.gz ok) or corpus CSVs (their transcript column)",
    )
    _add_alphabet(parser)
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object instead of lines"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(run=run_eval)


# --- handlers -------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    """Dispatch to the chosen subcommand (``cli.main`` calls ``args.run`` directly)."""
    return int(args.run(args) or 0)


def _alphabet(path):
    from ..alphabet import Alphabet

    return None if path is None else Alphabet.from_file(path)


def run_build(args: argparse.Namespace) -> int:
    from ..lm.build import build_arpa_file

    started = time.perf_counter()
    model = build_arpa_file(
        args.text,
        args.output,
        args.order,
        prune=args.prune,
        vocab_size=args.vocab_size,
        alphabet=_alphabet(args.alphabet),
        progress=not args.no_progress,
    )
    seconds = time.perf_counter() - started
    counts = ", ".join(f"{k}-grams {n}" for k, n in enumerate(model.counts(), start=1))
    print(
        f"wrote {args.output}: order {model.order}, {model.n_sentences} sentences, "
        f"{model.n_words} words, {counts} ({seconds:.1f} s)"
    )
    for k, used in enumerate(model.fallback, start=1):
        if used:
            print(
                f"note: {k}-gram count-of-counts too sparse for Kneser-Ney discounts; "
                f"used the fallback discounts {C.KN_FALLBACK_DISCOUNTS}",
                file=sys.stderr,
            )
    return 0


def run_info(args: argparse.Namespace) -> int:
    from ..lm.package import describe, open_scorer

    info = describe(open_scorer(args.scorer, _alphabet(args.alphabet)))
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    for key in ("path", "kind", "order", "alpha", "beta", "vocabulary_size", "is_utf8"):
        value = info[key]
        print(f"{key.replace('_', ' ')}: {'-' if value is None else value}")
    return 0


def run_package(args: argparse.Namespace) -> int:
    from ..lm.package import open_scorer, write_package

    write_package(
        args.output,
        args.language_model,
        args.alpha,
        args.beta,
        alphabet=_alphabet(args.alphabet),
    )
    written = open_scorer(args.output)
    size = "-" if written.vocabulary is None else len(written.vocabulary)
    print(
        f"wrote {args.output}: alpha {written.alpha}, beta {written.beta}, {size} words"
    )
    return 0


def run_tune(args: argparse.Namespace) -> int:
    import numpy as np

    from ..lm.package import open_scorer, set_scorer_parameters
    from ..lm.tune import beam_decode_fn, default_grid, load_log_probs, tune_alpha_beta

    if args.beam_width < 1:
        raise ConfigError(f"--beam-width must be >= 1, got {args.beam_width}")
    if args.grid_points < 1:
        raise ConfigError(f"--grid-points must be >= 1, got {args.grid_points}")
    if args.model and not args.dev:
        raise ConfigError("--model needs --dev CSV... (the dev set to tune on)")
    if args.dev and not args.model:
        raise ConfigError("--dev is used with --model; with --log-probs leave it out")
    model = None
    if args.model:
        from ..bundled import resolve_model
        from ..inference import Model

        model = Model.load(resolve_model(args.model)[0])
        if args.alphabet:
            raise ConfigError(
                "--alphabet comes from the model with --model; leave it out"
            )
        alphabet = model.alphabet
    else:
        alphabet = _alphabet(args.alphabet)
    scorer = open_scorer(args.scorer, alphabet)
    if scorer.kind in ("arpa", "kenlm_binary") and not (args.output or args.dry_run):
        # Say so before the search, not after it.
        raise ConfigError(
            f"{scorer.path}: a {scorer.kind} file cannot hold alpha/beta; give "
            "--output OUT.npscorer to write an npspeech package"
        )
    if model is not None:
        from ..data import read_csvs
        from ..inference import corpus_log_probs

        utterances = read_csvs(args.dev)
        log_probs_list = corpus_log_probs(
            model, utterances, progress=not args.no_progress
        )
        references = [utterance.transcript for utterance in utterances]
    else:
        log_probs_list, references = load_log_probs(args.log_probs)
    decode_fn = beam_decode_fn(scorer, alphabet, args.beam_width)
    alphas = args.alphas or default_grid(C.TUNE_ALPHA_RANGE, args.grid_points)
    betas = args.betas or default_grid(C.TUNE_BETA_RANGE, args.grid_points)
    result = tune_alpha_beta(
        log_probs_list,
        references,
        decode_fn,
        alphas,
        betas,
        refine_steps=args.refine,
        progress=not args.no_progress,
    )
    print(
        f"best alpha {result.alpha:.6g}, beta {result.beta:.6g}: WER {result.wer:.4f}, "
        f"CER {result.cer:.4f} ({len(result.table)} points, "
        f"{len(references)} utterances)"
    )
    if args.table:
        rows = np.array([(p.alpha, p.beta, p.wer, p.cer) for p in result.table])
        try:
            np.savetxt(
                args.table,
                rows,
                delimiter=",",
                header="alpha,beta,wer,cer",
                comments="",
                fmt="%.10g",
            )
        except OSError as error:
            raise ConfigError(f"--table {args.table}: cannot write ({error})") from None
    if args.dry_run:
        return 0
    written = set_scorer_parameters(
        args.scorer, result.alpha, result.beta, args.output, alphabet=alphabet
    )
    print(f"wrote {written}")
    return 0


_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
}


def parse_size(text: str, option: str = "--max-size") -> int:
    """Bytes of a size such as ``10MB`` (10**6), ``8MiB`` (2**20) or ``123456``."""
    import re

    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", text)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _SIZE_UNITS:
        raise ConfigError(
            f"{option} {text!r}: expected a number of bytes with an optional unit "
            "(kB, MB, GB, KiB, MiB, GiB)"
        )
    size = int(float(match.group(1)) * _SIZE_UNITS[unit])
    if size < 1:
        raise ConfigError(f"{option} {text!r}: must be at least one byte")
    return size


def _evaluation_line(name: str, evaluation) -> str:
    return (
        f"{name}: perplexity {evaluation.perplexity:.2f}, without OOV "
        f"{evaluation.perplexity_without_oov:.2f}, OOV rate {evaluation.oov_rate:.4f} "
        f"({evaluation.oov}/{evaluation.words} words, {evaluation.sentences} sentences)"
    )


def run_mix(args: argparse.Namespace) -> int:
    from ..lm.arpa import Lookup, read_language_model
    from ..lm.build import write_arpa
    from ..lm.evaluate import evaluate, read_sentences
    from ..lm.interpolate import check_weights, interpolate, tune_weights

    if len(args.models) < 2:
        raise ConfigError("mix needs at least two models")
    if args.dev is None and args.weights is None:
        raise ConfigError("give --dev TEXT... to tune the weights, or --weights")
    if args.weights is not None:
        check_weights(args.weights, len(args.models))
    models = [read_language_model(p, not args.no_progress) for p in args.models]
    dev = None
    if args.dev is not None:
        dev = read_sentences(args.dev, _alphabet(args.alphabet), not args.no_progress)
        for path, model in zip(args.models, models, strict=True):
            print(_evaluation_line(f"dev under {path}", evaluate(Lookup(model), dev)))
    weights = args.weights
    if weights is None:
        tuned = tune_weights(models, dev)
        weights = tuned.weights
        print(
            f"EM weights after {tuned.iterations} iterations on {tuned.tokens} dev "
            f"tokens (exact mixture perplexity {tuned.perplexity:.2f}):"
        )
    for path, weight in zip(args.models, weights, strict=True):
        print(f"  {weight:.6f}  {path}")
    mixed = interpolate(models, weights, progress=not args.no_progress)
    write_arpa(mixed, args.output)
    counts = ", ".join(f"{k}-grams {n}" for k, n in enumerate(mixed.counts(), start=1))
    print(f"wrote {args.output}: order {mixed.order}, {counts}")
    if dev is not None:
        print(_evaluation_line("dev under the mixture", evaluate(Lookup(mixed), dev)))
    return 0


def run_prune(args: argparse.Namespace) -> int:
    import os

    from ..lm.arpa import read_language_model
    from ..lm.build import write_arpa
    from ..lm.prune import package_overhead, prune

    max_bytes = None if args.max_size is None else parse_size(args.max_size)
    if args.max_package_size is not None:
        package_bytes = parse_size(args.max_package_size, "--max-package-size")
    if args.max_ngrams is not None and args.max_ngrams < 1:
        raise ConfigError(f"--max-ngrams must be >= 1, got {args.max_ngrams}")
    if args.threshold is not None and not args.threshold >= 0:
        raise ConfigError(f"--threshold must be >= 0, got {args.threshold}")
    model = read_language_model(args.model, not args.no_progress)
    if args.max_package_size is not None:
        overhead = package_overhead(model.vocabulary)
        if package_bytes <= overhead:
            raise ConfigError(
                f"--max-package-size {args.max_package_size}: the word list alone "
                f"takes up to {overhead} bytes of a package"
            )
        max_bytes = package_bytes - overhead
    pruned, result = prune(
        model,
        threshold=args.threshold,
        max_bytes=max_bytes,
        max_ngrams=args.max_ngrams,
        progress=not args.no_progress,
    )
    write_arpa(pruned, args.output)
    before = ", ".join(str(n) for n in result.counts_before)
    after = ", ".join(str(n) for n in result.counts_after)
    print(
        f"wrote {args.output}: {os.path.getsize(args.output)} bytes, n-grams per "
        f"order {before} -> {after} (threshold {result.threshold:.3g} nats)"
    )
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from ..lm.arpa import Lookup, read_language_model
    from ..lm.evaluate import evaluate, read_sentences

    model = read_language_model(args.model, not args.no_progress)
    sentences = read_sentences(
        args.text, _alphabet(args.alphabet), not args.no_progress
    )
    evaluation = evaluate(Lookup(model), sentences)
    if args.json:
        print(json.dumps({"model": str(args.model), **evaluation.as_dict()}, indent=2))
        return 0
    print(_evaluation_line(str(args.model), evaluation))
    return 0
