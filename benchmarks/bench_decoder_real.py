"""Decoders on a trained model's real outputs: npspeech against pyctcdecode.

The model runs once over the test CSVs; its per-utterance log-probabilities then go
through greedy decoding, npspeech's beam search and pyctcdecode's, each beam without and
with the same word n-gram LM. The LM is built by ``npspeech lm build``'s library
function from the *training* CSVs' transcripts only (the script refuses to run if a
test or dev transcript occurs among them), so no test sentence reaches it. Both beam
decoders get the same alphabet order (blank last), the same beam width, the same KenLM
model and vocabulary. Times are medians of per-utterance process CPU time, one thread,
the two decoders taking turns on each test utterance (so that the machine's drift
reaches both alike); the script prints WER/CER, the ratios of the median and of the
total times, and a paired bootstrap interval for each WER/CER difference; it fails when
the two beam searches without an LM disagree by more than 0.01 CER (they run the same
search).

Two protocols:

* untuned (default): both decoders get the same ``--alpha``/``--beta``;
* tuned (``--dev-csv``): alpha and beta are searched on the dev CSVs for EACH decoder
  separately over the same grid (``--alphas`` x ``--betas``), ranked by dev WER then
  CER, as a user would tune either one. npspeech's own out-of-vocabulary knobs
  (``--oov-penalties`` x ``--oov-word-penalties``, default: the Scorer's defaults only)
  are searched with them; pyctcdecode keeps its other settings at its defaults. Test is
  then decoded once, each decoder at its own best dev setting.

npspeech runs at its library defaults (``npspeech.constants``: ``cutoff_prob``,
``cutoff_top_n``, the Scorer's OOV penalties) unless a flag says otherwise;
``--cutoff-prob 1.0 --oov-word-penalties 0`` gives DeepSpeech's search (as ``api.Model``
runs it) with npspeech's earlier OOV setting.

Run::

    python benchmarks/bench_decoder_real.py \\
        --model runs/kathleen_fsdd_small/model.npz \\
        --test-csv $NPSPEECH_DATA/kathleen_arctic/test.csv \\
        --lm-csv $NPSPEECH_DATA/kathleen_arctic/train.csv \\
        [--dev-csv $NPSPEECH_DATA/kathleen_arctic/dev.csv --cache-dir /tmp/bdr]
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path

from npspeech import constants as C
from npspeech.data import read_csvs
from npspeech.decoder.beam import BeamSearchDecoder
from npspeech.decoder.greedy import best_path
from npspeech.decoder.scorer import Scorer
from npspeech.inference import Model, corpus_log_probs
from npspeech.lm.build import build_arpa, write_arpa
from npspeech.lm.tune import load_log_probs, save_log_probs, tune_alpha_beta
from npspeech.metrics import corpus_error_counts, paired_bootstrap

# The alpha/beta grid both decoders are tuned over (6 x 7 points).
ALPHAS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
BETAS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0)


def timed(*functions, items):
    """Each function's results over ``items`` with its median and total CPU seconds.

    The functions take turns on each item, so that the machine's drift over the run
    reaches them alike. Returns one ``(results, median seconds, total seconds)`` per
    function.
    """
    results = [[] for _ in functions]
    seconds = [[] for _ in functions]
    for item in items:
        for function, out, spent in zip(functions, results, seconds):
            start = time.process_time()
            out.append(function(item))
            spent.append(time.process_time() - start)
    return [
        (out, statistics.median(spent), sum(spent))
        for out, spent in zip(results, seconds)
    ]


def split_log_probs(model, model_path, csvs, limit, cache_dir):
    """Utterances, references and log-probs of ``csvs``; cached as ``.npz`` if asked.

    Returns ``(utterances, references, log_probs)`` with log_probs a list of float32
    arrays, shape (T_i, V).
    """
    utterances = read_csvs(csvs)
    if limit:
        utterances = utterances[:limit]
    references = [u.transcript for u in utterances]
    cache = None
    if cache_dir:
        model_path = Path(model_path).resolve()
        key = "|".join(
            [str(model_path), str(model_path.stat().st_mtime_ns), str(limit)]
            + [str(Path(c).resolve()) for c in csvs]
        )
        digest = hashlib.sha1(key.encode()).hexdigest()[:16]
        cache = Path(cache_dir) / f"log_probs_{digest}.npz"
        if cache.is_file():
            log_probs, cached_references = load_log_probs(cache)
            if cached_references == references:
                return utterances, references, log_probs
    log_probs = corpus_log_probs(model, utterances)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        save_log_probs(cache, log_probs, references)
    return utterances, references, log_probs


def npspeech_decoder(args, alphabet, scorer):
    return BeamSearchDecoder(
        alphabet,
        beam_width=args.beam_width,
        cutoff_top_n=args.cutoff_top_n,
        cutoff_prob=args.cutoff_prob,
        scorer=scorer,
    )


def npspeech_scorer(base, alpha, beta, oov_penalty, oov_word_penalty, unk_score):
    """A Scorer over ``base``'s KenLM model and vocabulary with other weights.

    ``None`` for ``oov_penalty``/``oov_word_penalty`` means the Scorer's default, for
    ``unk_score`` KenLM's own ``<unk>`` probability (the Scorer's default too).
    """
    options = {}
    if oov_penalty is not None:
        options["oov_penalty"] = oov_penalty
    if oov_word_penalty is not None:
        options["oov_word_penalty"] = oov_word_penalty
    return Scorer(
        base.language_model,
        alpha,
        beta,
        vocabulary=base.vocabulary,
        vocabulary_covers_lm=base.vocabulary_covers_lm,
        unk_score=unk_score,
        **options,
    )


def tune_npspeech(args, alphabet, base, log_probs, references):
    """The best (alpha, beta, oov knobs, unk_score) on dev and its TunePoint."""
    best = None
    knobs = itertools.product(
        args.oov_penalties, args.oov_word_penalties, args.unk_scores
    )
    for oov, oov_word, unk in knobs:
        scorer = npspeech_scorer(base, base.alpha, base.beta, oov, oov_word, unk)
        decoder = npspeech_decoder(args, alphabet, scorer)

        def decode(lp, alpha, beta, scorer=scorer, decoder=decoder):
            scorer.alpha, scorer.beta = float(alpha), float(beta)
            return decoder.decode_text(lp)

        result = tune_alpha_beta(log_probs, references, decode, args.alphas, args.betas)
        title = (
            f"npspeech dev WER, oov_penalty {scorer.oov_penalty}, "
            f"oov_word_penalty {scorer.oov_word_penalty}, unk_score {scorer.unk_score}"
        )
        print_grid(title, result, args)
        if best is None or (result.wer, result.cer) < (best[1].wer, best[1].cer):
            settings = (scorer.oov_penalty, scorer.oov_word_penalty, scorer.unk_score)
            best = ((result.alpha, result.beta) + settings, result)
    return best


def tune_peer(args, peer, log_probs, references):
    """Best (alpha, beta) of pyctcdecode on dev (its other settings at defaults)."""

    def decode(lp, alpha, beta):
        peer.reset_params(alpha=float(alpha), beta=float(beta))
        return " ".join(peer.decode(lp, beam_width=args.beam_width).split())

    result = tune_alpha_beta(log_probs, references, decode, args.alphas, args.betas)
    print_grid("pyctcdecode dev WER", result, args)
    return result


def print_grid(title, result, args):
    """The dev WER of every (alpha, beta) point as an alpha x beta table."""
    table = {(p.alpha, p.beta): p for p in result.table}
    print(
        f"{title}: best alpha {result.alpha} beta {result.beta} "
        f"WER {result.wer:.4f} CER {result.cer:.4f}"
    )
    print("  alpha\\beta " + " ".join(f"{b:>6}" for b in args.betas))
    for alpha in args.alphas:
        cells = " ".join(f"{table[(alpha, b)].wer:>6.4f}" for b in args.betas)
        print(f"  {alpha:>10} {cells}")
    sys.stdout.flush()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--test-csv", nargs="+", required=True)
    parser.add_argument(
        "--lm-csv", nargs="+", required=True, help="training CSVs for the LM text"
    )
    parser.add_argument(
        "--dev-csv",
        nargs="+",
        default=None,
        help="tune alpha/beta on these CSVs for each decoder separately",
    )
    parser.add_argument("--alphas", type=float, nargs="+", default=list(ALPHAS))
    parser.add_argument("--betas", type=float, nargs="+", default=list(BETAS))
    parser.add_argument(
        "--oov-penalties",
        type=float,
        nargs="+",
        default=[None],
        help="npspeech's per-letter OOV penalties tuned with alpha/beta on dev",
    )
    parser.add_argument(
        "--oov-word-penalties",
        type=float,
        nargs="+",
        default=[None],
        help="npspeech's flat OOV penalties tuned with alpha/beta on dev",
    )
    parser.add_argument(
        "--unk-scores",
        type=float,
        nargs="+",
        default=[None],
        help="npspeech's LM score of an unknown word tuned on dev (default: KenLM's)",
    )
    parser.add_argument(
        "--cache-dir", default=None, help="keep the log-probs as .npz files here"
    )
    parser.add_argument("--order", type=int, default=3, help="LM order (default 3)")
    parser.add_argument("--beam-width", type=int, default=100)
    parser.add_argument("--alpha", type=float, default=0.75)
    parser.add_argument("--beta", type=float, default=1.85)
    parser.add_argument(
        "--cutoff-prob",
        type=float,
        default=C.CUTOFF_PROB,
        help="npspeech's per-frame cumulative-probability pruning "
        f"(default: npspeech's, {C.CUTOFF_PROB}; DeepSpeech: 1.0)",
    )
    parser.add_argument(
        "--cutoff-top-n",
        type=int,
        default=C.CUTOFF_TOP_N,
        help="npspeech's classes considered per frame "
        f"(default: npspeech's, {C.CUTOFF_TOP_N}; DeepSpeech: 40)",
    )
    parser.add_argument(
        "--oov-penalty",
        type=float,
        default=None,
        help="npspeech's per-letter out-of-vocabulary penalty (default: the Scorer's)",
    )
    parser.add_argument(
        "--oov-word-penalty",
        type=float,
        default=None,
        help="npspeech's penalty where a word leaves the vocabulary "
        "(default: Scorer's)",
    )
    parser.add_argument(
        "--unk-score",
        type=float,
        default=None,
        help="npspeech's LM score of an unknown word (default: KenLM's <unk>)",
    )
    parser.add_argument("--max-utterances", type=int, default=0, help="0: all")
    parser.add_argument("--skip-peer", action="store_true")
    parser.add_argument(
        "--save-texts", default=None, help="write each decoder's test texts (TSV)"
    )
    args = parser.parse_args(argv)

    model = Model.load(args.model)
    alphabet = model.alphabet
    test, references, log_probs = split_log_probs(
        model, args.model, args.test_csv, args.max_utterances, args.cache_dir
    )
    lm_text = [u.transcript for u in read_csvs(args.lm_csv)]
    dev = None
    if args.dev_csv:
        dev = split_log_probs(
            model, args.model, args.dev_csv, args.max_utterances, args.cache_dir
        )
    for name, split in (("test", test), ("dev", dev[0] if dev else [])):
        leaked = {u.transcript for u in split} & set(lm_text)
        if leaked:
            print(f"refusing: {len(leaked)} {name} transcripts occur in the LM text")
            return 2
    frames = sum(lp.shape[0] for lp in log_probs)
    print(
        f"{len(test)} test utterances, {frames} frames; LM: order {args.order} from "
        f"{len(lm_text)} training transcripts; beam {args.beam_width}, "
        f"npspeech cutoff_prob {args.cutoff_prob}, cutoff_top_n {args.cutoff_top_n}"
        + (f"; tuning on {len(dev[0])} dev utterances" if dev else "")
    )

    with tempfile.TemporaryDirectory() as folder:
        arpa = Path(folder) / "train.arpa"
        write_arpa(build_arpa(lm_text, args.order, alphabet=alphabet), arpa)
        base = Scorer.from_file(arpa, alpha=args.alpha, beta=args.beta)
        vocabulary = list(base.vocabulary or ())

        peers = {}
        if not args.skip_peer:
            from pyctcdecode import build_ctcdecoder

            labels = list(alphabet.labels) + [""]  # blank last, "" for pyctcdecode
            peers[False] = build_ctcdecoder(labels)
            peers[True] = build_ctcdecoder(
                labels,
                kenlm_model_path=str(arpa),
                unigrams=vocabulary,
                alpha=args.alpha,
                beta=args.beta,
            )

        ours = (
            args.alpha,
            args.beta,
            args.oov_penalty,
            args.oov_word_penalty,
            args.unk_score,
        )
        theirs = (args.alpha, args.beta)
        if dev:
            _, dev_references, dev_log_probs = dev
            ours, ours_dev = tune_npspeech(
                args, alphabet, base, dev_log_probs, dev_references
            )
            if peers:
                theirs_dev = tune_peer(args, peers[True], dev_log_probs, dev_references)
                theirs = (theirs_dev.alpha, theirs_dev.beta)
            print(
                f"chosen on dev: npspeech alpha {ours[0]} beta {ours[1]} oov_penalty "
                f"{ours[2]} oov_word_penalty {ours[3]} unk_score {ours[4]} "
                f"(dev WER {ours_dev.wer:.4f} CER {ours_dev.cer:.4f})"
                + (
                    f"; pyctcdecode alpha {theirs[0]} beta {theirs[1]} (dev WER "
                    f"{theirs_dev.wer:.4f} CER {theirs_dev.cer:.4f})"
                    if peers
                    else ""
                )
            )
        scorer = npspeech_scorer(base, *ours)
        if peers:
            peers[True].reset_params(alpha=float(theirs[0]), beta=float(theirs[1]))

        rows = []
        ((texts, median, total),) = timed(
            lambda lp: alphabet.decode(best_path(lp, alphabet.blank)[0]),
            items=log_probs,
        )
        rows.append(("greedy", texts, median, total, None))
        for use_lm in (False, True):
            decoder = npspeech_decoder(args, alphabet, scorer if use_lm else None)
            functions = [lambda lp, d=decoder: d.decode_text(lp)]
            if peers:
                functions.append(
                    lambda lp, p=peers[use_lm]: " ".join(
                        p.decode(lp, beam_width=args.beam_width).split()
                    )
                )
            (texts, median, total), *peer = timed(*functions, items=log_probs)
            label = f"beam {args.beam_width}" + (" + LM" if use_lm else "")
            rows.append((label, texts, median, total, peer[0] if peer else None))

    print(
        "CPU time per utterance (median); the two decoders take turns on each "
        "utterance. speed-up: of the medians; total: of the summed times"
    )
    print(
        f"{'decoder':<16} {'WER':>7} {'CER':>7} {'ms/utt':>8} | "
        f"{'peer WER':>8} {'peer CER':>8} {'peer ms':>8} {'speed-up':>8} {'total':>6}"
    )
    failures = []
    bootstrap_lines = []
    for label, texts, seconds, total, peer in rows:
        if len(texts) != len(references):
            failures.append(f"{label}: {len(texts)} transcripts for {len(references)}")
        counts = corpus_error_counts(references, texts)
        line = (
            f"{label:<16} {counts.wer:>7.4f} {counts.cer:>7.4f} {seconds * 1e3:>8.2f} |"
        )
        if peer and peer[0] is not None:
            peer_counts = corpus_error_counts(references, peer[0])
            line += (
                f" {peer_counts.wer:>8.4f} {peer_counts.cer:>8.4f}"
                f" {peer[1] * 1e3:>8.1f} {peer[1] / seconds:>7.1f}x"
                f" {peer[2] / total:>5.1f}x"
            )
            wer_diff, cer_diff = paired_bootstrap(references, texts, peer[0])
            bootstrap_lines.append(
                f"{label}: npspeech - pyctcdecode WER {wer_diff.difference:+.4f} "
                f"[{wer_diff.low:+.4f}, {wer_diff.high:+.4f}], CER "
                f"{cer_diff.difference:+.4f} "
                f"[{cer_diff.low:+.4f}, {cer_diff.high:+.4f}] "
                f"(95% paired bootstrap over utterances; npspeech lower in "
                f"{wer_diff.a_better:.0%} / {cer_diff.a_better:.0%} of resamples)"
            )
            # Without an LM both run the same CTC prefix search: they must
            # agree closely.
            if "LM" not in label and counts.cer > peer_counts.cer + 0.01:
                failures.append(
                    f"{label}: CER {counts.cer:.4f} vs {peer_counts.cer:.4f}"
                )
        print(line)
    for line in bootstrap_lines:
        print(line)
    if args.save_texts:
        with open(args.save_texts, "w", encoding="utf-8") as handle:
            for i, reference in enumerate(references):
                fields = [reference] + [row[1][i] for row in rows]
                fields += [row[4][0][i] for row in rows if row[4]]
                handle.write("\t".join(fields) + "\n")
    for failure in failures:
        print("FAILED:", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
