"""Prefix beam search: npspeech side by side with pyctcdecode, same inputs, same LM.

Times are medians of process CPU time (the machine is shared), wall time for threads.
Inputs are T x 29 log-probabilities synthesised from real text: each character of the
source text gets 1-2 frames, separated by 0-3 blank frames (the blank dominates), every
logit gets Gaussian noise and a few characters are misspelt (their peak moves to another
letter). Both decoders see the same matrices, the same alphabet order (blank last, ""
for pyctcdecode), the same KenLM model (DeepSpeech's ``pruned_lm.scorer``) and the same
alpha and beta (natural-log LM weight, per-word bonus in both). The script prints median
times, their ratio and both decoders' CER against the source text, and fails when the
npspeech results are less accurate than pyctcdecode's.

Run: ``python benchmarks/bench_decoder.py [--beams 100 500] [--repeats 5]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from npspeech.alphabet import Alphabet
from npspeech.decoder.beam import BeamSearchDecoder
from npspeech.decoder.scorer import Scorer
from npspeech.metrics import cer
from npspeech.nn import activations

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "deepspeech_smoke"
SCORER = DATA / "lm" / "pruned_lm.scorer"


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """float32 log-probabilities of float64 logits (computed in float64)."""
    return activations.log_softmax(logits).astype(np.float32)


def synthesize(
    rng: np.random.Generator,
    alphabet: Alphabet,
    text: str,
    n_frames: int,
    noise: float = 1.0,
    peak: float = 5.0,
    misspell: float = 0.05,
    confusion_margin: float = 1.0,
) -> tuple[np.ndarray, str]:
    """(T, V) log-probs of the part of ``text`` that fits in ``n_frames``; that part."""
    blank = alphabet.blank
    letters = [int(i) for i in alphabet.encode("abcdefghijklmnopqrstuvwxyz")]
    path: list[int] = []
    peaks: list[int] = []
    used = 0
    previous = -1
    for label in alphabet.encode(text):
        label = int(label)
        gap = int(rng.integers(0, 4))
        if label == previous:
            gap = max(gap, 1)  # a repeated character needs a blank between
        hold = int(rng.integers(1, 3))
        if len(path) + gap + hold > n_frames:
            break
        shown = label
        if label in letters and rng.random() < misspell:
            shown = int(rng.choice(letters))
        path += [blank] * gap + [label] * hold
        peaks += [blank] * gap + [shown] * hold
        previous = label
        used += 1
    path += [blank] * (n_frames - len(path))
    peaks += [blank] * (n_frames - len(peaks))
    logits = rng.normal(0.0, noise, size=(n_frames, alphabet.n_classes))
    frames = np.arange(n_frames)
    confused = np.asarray(peaks) != np.asarray(path)
    # a misspelt frame: the wrong letter peaks, the right one stays a close second
    logits[frames[confused], np.asarray(path)[confused]] += peak - confusion_margin
    logits[frames, peaks] += peak
    reference = " ".join(text[:used].split())  # one label per character
    return log_softmax(logits), reference


def median_seconds(
    function, repeats: int, clock=time.process_time
) -> tuple[float, object]:
    """Median duration of ``repeats`` calls and the last result.

    Single-threaded work is timed in process CPU time: the team's machine is shared, and
    CPU time is what other processes disturb least. Thread scaling uses wall time.
    """
    times = []
    result = None
    for _ in range(repeats):
        start = clock()
        result = function()
        times.append(clock() - start)
    return statistics.median(times), result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--beams", type=int, nargs="+", default=[100, 500])
    parser.add_argument("--frames", type=int, default=500)
    parser.add_argument("--utterances", type=int, default=3)
    parser.add_argument(
        "--repeats", type=int, default=5, help="npspeech runs per input"
    )
    parser.add_argument("--peer-repeats", type=int, default=1, help="pyctcdecode runs")
    parser.add_argument(
        "--peer-utterances", type=int, default=1, help="utterances pyctcdecode decodes"
    )
    parser.add_argument("--skip-hotwords", action="store_true")
    parser.add_argument("--skip-threads", action="store_true")
    parser.add_argument("--skip-peer", action="store_true")
    args = parser.parse_args(argv)

    alphabet = Alphabet.from_file(DATA / "alphabet.txt")
    # Source text: lines of the LM's own training text (in-domain for the scorer).
    lines = (DATA / "lm" / "vocab.txt").read_text().splitlines()
    rng = np.random.default_rng(2024)
    inputs = []
    for index in range(args.utterances):
        start = 40 + 37 * index
        text = alphabet.normalize(" ".join(lines[start : start + 12]))
        inputs.append(synthesize(rng, alphabet, text, args.frames))
    scorer = Scorer.from_file(SCORER)
    vocabulary = list(scorer.vocabulary or ())
    print(
        f"{len(inputs)} utterances of {args.frames} frames x {alphabet.n_classes} "
        "classes; "
        f"alpha {scorer.alpha:.4f}, beta {scorer.beta:.4f}"
    )

    peers = {}
    if not args.skip_peer:
        from pyctcdecode import build_ctcdecoder

        labels = list(alphabet.labels) + [""]  # pyctcdecode: blank is "", last here
        peers[False] = build_ctcdecoder(labels)
        peers[True] = build_ctcdecoder(
            labels,
            kenlm_model_path=str(SCORER),
            unigrams=vocabulary,
            alpha=scorer.alpha,
            beta=scorer.beta,
        )

    failures = []
    n_peer = min(args.peer_utterances, len(inputs))
    print(
        f"CER over all {len(inputs)} utterances for npspeech; times and "
        "'CER on shared' "
        f"over the first {n_peer}, which pyctcdecode also decodes"
    )
    print(
        f"{'beam':>5} {'LM':>3} {'npspeech s':>11} {'pyctcdecode s':>14} {'ratio':>7}"
        f" {'CER np':>7} {'CER np shared':>14} {'CER peer shared':>16}"
    )
    references = [reference for _, reference in inputs]
    for beam_width in args.beams:
        for use_lm in (False, True):
            decoder = BeamSearchDecoder(
                alphabet, beam_width=beam_width, scorer=scorer if use_lm else None
            )
            decoder.decode(inputs[0][0])  # warm up (the LM cache as pyctcdecode's)
            ours, theirs, texts_ours, texts_theirs = [], [], [], []
            for log_probs, _ in inputs:
                seconds, result = median_seconds(
                    lambda lp=log_probs, d=decoder: d.decode(lp), args.repeats
                )
                ours.append(seconds)
                texts_ours.append(result[0].text)
            cer_ours = cer(references, texts_ours)
            line = f"{beam_width:>5} {'yes' if use_lm else 'no':>3}"
            if peers:
                peer = peers[use_lm]
                for log_probs, _ in inputs[:n_peer]:
                    seconds, text = median_seconds(
                        lambda lp=log_probs, p=peer, b=beam_width: p.decode(
                            lp, beam_width=b
                        ),
                        args.peer_repeats,
                    )
                    theirs.append(seconds)
                    texts_theirs.append(" ".join(text.split()))
                ours_median = statistics.median(ours[:n_peer])
                theirs_median = statistics.median(theirs)
                cer_shared = cer(references[:n_peer], texts_ours[:n_peer])
                cer_theirs = cer(references[:n_peer], texts_theirs)
                line += f" {ours_median:>11.4f} {theirs_median:>14.3f}"
                line += f" {theirs_median / ours_median:>7.1f} {cer_ours:>7.4f}"
                line += f" {cer_shared:>14.4f} {cer_theirs:>16.4f}"
                if cer_shared > cer_theirs + 0.01:
                    failures.append(f"beam {beam_width} LM {use_lm}: CER above peer's")
            else:
                line += f" {statistics.median(ours):>11.4f} {'-':>14} {'-':>7}"
                line += f" {cer_ours:>7.4f}"
            print(line, flush=True)
            if use_lm and cer_ours > 0.05:
                failures.append(f"beam {beam_width} with LM: CER {cer_ours:.3f} > 0.05")

    if not args.skip_hotwords:
        hotword_costs(args, alphabet, scorer, vocabulary, inputs, failures)
    if not args.skip_threads:
        thread_scaling(args, alphabet, scorer, inputs)
    for failure in failures:
        print("FAILED:", failure)
    return 1 if failures else 0


def hotword_costs(args, alphabet, scorer, vocabulary, inputs, failures) -> None:
    """The cost of 0, 200 and 1000 hot-words at the widest beam, with the LM."""
    beam_width = max(args.beams)
    words = sorted(set(vocabulary))
    pick = np.random.default_rng(5).permutation(len(words))
    print(f"hot-words, beam {beam_width}, with LM (npspeech only)")
    base = None
    for count in (0, 200, 1000):
        hotwords = {words[i]: 1.0 for i in pick[:count]}
        decoder = BeamSearchDecoder(
            alphabet, beam_width=beam_width, scorer=scorer, hotwords=hotwords or None
        )
        decoder.decode(inputs[0][0])
        times = [
            median_seconds(lambda lp=lp, d=decoder: d.decode(lp), args.repeats)[0]
            for lp, _ in inputs
        ]
        seconds = statistics.median(times)
        base = seconds if base is None else base
        print(
            f"{count:>6} hot-words {seconds:>9.4f} s  x{seconds / base:.3f}", flush=True
        )
        if seconds > 1.2 * base and count == 1000:
            failures.append(f"1000 hot-words cost x{seconds / base:.2f} (> 1.2)")


def thread_scaling(args, alphabet, scorer, inputs) -> None:
    """decode_batch on 1 and 2 threads (the compiled search releases the GIL)."""
    beam_width = min(args.beams)
    decoder = BeamSearchDecoder(alphabet, beam_width=beam_width, scorer=scorer)
    batch = [lp for lp, _ in inputs] * 2
    expected = [decoder.decode(lp) for lp in batch]
    for threads in (1, 2):
        seconds, result = median_seconds(
            lambda n=threads: decoder.decode_batch(batch, num_threads=n),
            3,
            clock=time.perf_counter,
        )
        assert result == expected
        print(f"decode_batch of {len(batch)}, {threads} thread(s): {seconds:.4f} s")


if __name__ == "__main__":
    sys.exit(main())
