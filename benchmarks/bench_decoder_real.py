"""Decoders on a trained model's real outputs: npspeech against pyctcdecode.

The model runs once over the test CSVs; its per-utterance log-probabilities then go
through greedy decoding, npspeech's beam search and pyctcdecode's, each beam without and
with the same word n-gram LM. The LM is built by ``npspeech lm build``'s library
function from the *training* CSVs' transcripts only (the script refuses to run if a
test transcript occurs among them), so no test sentence reaches it. Both beam decoders
get the same alphabet order (blank last), the same beam width, the same KenLM model and
vocabulary and the same alpha/beta. Times are medians of per-utterance process CPU time,
one thread; the script prints WER/CER and the time ratio, and fails when the two beam
searches without an LM disagree by more than 0.01 CER (they run the same search).

Run::

    python benchmarks/bench_decoder_real.py --model runs/kathleen_fsdd_small/model.npz \\
        --test-csv $NPSPEECH_DATA/kathleen_arctic/test.csv \\
        --lm-csv $NPSPEECH_DATA/kathleen_arctic/train.csv
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from npspeech.data import read_csvs
from npspeech.decoder.beam import BeamSearchDecoder
from npspeech.decoder.greedy import best_path
from npspeech.decoder.scorer import Scorer
from npspeech.inference import Model, corpus_log_probs
from npspeech.lm.build import build_arpa, write_arpa
from npspeech.metrics import corpus_error_counts


def timed(function, items):
    """Results of ``function`` over ``items`` and the median CPU seconds per item."""
    results, seconds = [], []
    for item in items:
        start = time.process_time()
        results.append(function(item))
        seconds.append(time.process_time() - start)
    return results, statistics.median(seconds)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--test-csv", nargs="+", required=True)
    parser.add_argument(
        "--lm-csv", nargs="+", required=True, help="training CSVs for the LM text"
    )
    parser.add_argument("--order", type=int, default=3, help="LM order (default 3)")
    parser.add_argument("--beam-width", type=int, default=100)
    parser.add_argument("--alpha", type=float, default=0.75)
    parser.add_argument("--beta", type=float, default=1.85)
    parser.add_argument(
        "--cutoff-prob",
        type=float,
        default=1.0,
        help="npspeech's per-frame cumulative-probability pruning (DeepSpeech: 1.0)",
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
        help="npspeech's penalty where a word leaves the vocabulary (default: Scorer's)",
    )
    parser.add_argument("--max-utterances", type=int, default=0, help="0: all")
    parser.add_argument("--skip-peer", action="store_true")
    args = parser.parse_args(argv)

    model = Model.load(args.model)
    alphabet = model.alphabet
    test = read_csvs(args.test_csv)
    if args.max_utterances:
        test = test[: args.max_utterances]
    lm_text = [u.transcript for u in read_csvs(args.lm_csv)]
    leaked = {u.transcript for u in test} & set(lm_text)
    if leaked:
        print(f"refusing: {len(leaked)} test transcripts occur in the LM text")
        return 2
    references = [u.transcript for u in test]
    log_probs = corpus_log_probs(model, test)
    frames = sum(lp.shape[0] for lp in log_probs)
    print(
        f"{len(test)} test utterances, {frames} frames; LM: order {args.order} from "
        f"{len(lm_text)} training transcripts; beam {args.beam_width}, "
        f"alpha {args.alpha}, beta {args.beta}, npspeech cutoff_prob {args.cutoff_prob}"
    )

    with tempfile.TemporaryDirectory() as folder:
        arpa = Path(folder) / "train.arpa"
        write_arpa(build_arpa(lm_text, args.order, alphabet=alphabet), arpa)
        options = {}
        if args.oov_penalty is not None:
            options["oov_penalty"] = args.oov_penalty
        if args.oov_word_penalty is not None:
            options["oov_word_penalty"] = args.oov_word_penalty
        scorer = Scorer.from_file(arpa, alpha=args.alpha, beta=args.beta, **options)
        vocabulary = list(scorer.vocabulary or ())

        rows = []
        texts, seconds = timed(
            lambda lp: alphabet.decode(best_path(lp, alphabet.blank)[0]), log_probs
        )
        rows.append(("greedy", texts, seconds, None))
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
        for use_lm in (False, True):
            decoder = BeamSearchDecoder(
                alphabet,
                beam_width=args.beam_width,
                cutoff_prob=args.cutoff_prob,
                scorer=scorer if use_lm else None,
            )
            texts, seconds = timed(
                lambda lp, d=decoder: d.decode(lp)[0].text, log_probs
            )
            peer_texts, peer_seconds = None, None
            if peers:
                peer = peers[use_lm]
                peer_texts, peer_seconds = timed(
                    lambda lp, p=peer: " ".join(
                        p.decode(lp, beam_width=args.beam_width).split()
                    ),
                    log_probs,
                )
            label = f"beam {args.beam_width}" + (" + LM" if use_lm else "")
            rows.append((label, texts, seconds, (peer_texts, peer_seconds)))

    print(
        f"{'decoder':<16} {'WER':>7} {'CER':>7} {'ms/utt':>8} | "
        f"{'peer WER':>8} {'peer CER':>8} {'peer ms':>8} {'speed-up':>8}"
    )
    failures = []
    for label, texts, seconds, peer in rows:
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
            )
            # Without an LM both run the same CTC prefix search: they must agree closely.
            if "LM" not in label and counts.cer > peer_counts.cer + 0.01:
                failures.append(
                    f"{label}: CER {counts.cer:.4f} vs {peer_counts.cer:.4f}"
                )
        print(line)
    for failure in failures:
        print("FAILED:", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
