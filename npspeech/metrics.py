"""Word and character error rates.

Edit distances come from rapidfuzz's C++ Levenshtein, which accepts sequences of words
as well as strings. Corpus rates are the total edits over the total reference length (as
DeepSpeech and jiwer report them), not the mean of per-utterance rates.

:func:`paired_bootstrap` says how sure a difference between two systems on one test set
is: the paired bootstrap over utterances (Bisani and Ney, ICASSP 2004).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from rapidfuzz.distance import Levenshtein


@dataclass(frozen=True)
class ErrorCounts:
    """Edits and reference length for one utterance or a whole corpus."""

    word_edits: int
    words: int
    char_edits: int
    chars: int

    @property
    def wer(self) -> float:
        """Word error rate; ``inf`` when the reference has no words but the
        hypothesis does.
        """
        return _rate(self.word_edits, self.words)

    @property
    def cer(self) -> float:
        """Character error rate, spaces counted as characters."""
        return _rate(self.char_edits, self.chars)

    def __add__(self, other: ErrorCounts) -> ErrorCounts:
        return ErrorCounts(
            self.word_edits + other.word_edits,
            self.words + other.words,
            self.char_edits + other.char_edits,
            self.chars + other.chars,
        )


def _rate(edits: int, length: int) -> float:
    if length == 0:
        return 0.0 if edits == 0 else float("inf")
    return edits / length


def error_counts(reference: str, hypothesis: str) -> ErrorCounts:
    """Word and character edit distances of one hypothesis against its reference.

    Both strings are compared after collapsing runs of whitespace.
    """
    reference_words = reference.split()
    hypothesis_words = hypothesis.split()
    reference_text = " ".join(reference_words)
    hypothesis_text = " ".join(hypothesis_words)
    return ErrorCounts(
        word_edits=Levenshtein.distance(reference_words, hypothesis_words),
        words=len(reference_words),
        char_edits=Levenshtein.distance(reference_text, hypothesis_text),
        chars=len(reference_text),
    )


def corpus_error_counts(
    references: Sequence[str], hypotheses: Sequence[str]
) -> ErrorCounts:
    """Summed counts over aligned lists of references and hypotheses."""
    if len(references) != len(hypotheses):
        raise ValueError(
            f"{len(references)} references but {len(hypotheses)} hypotheses"
        )
    total = ErrorCounts(0, 0, 0, 0)
    for reference, hypothesis in zip(references, hypotheses):
        total = total + error_counts(reference, hypothesis)
    return total


def wer(references: Sequence[str] | str, hypotheses: Sequence[str] | str) -> float:
    """Corpus word error rate (a single pair of strings is a corpus of one)."""
    if isinstance(references, str):
        return error_counts(references, hypotheses).wer
    return corpus_error_counts(references, hypotheses).wer


def cer(references: Sequence[str] | str, hypotheses: Sequence[str] | str) -> float:
    """Corpus character error rate (a single pair of strings is a corpus of one)."""
    if isinstance(references, str):
        return error_counts(references, hypotheses).cer
    return corpus_error_counts(references, hypotheses).cer


@dataclass(frozen=True)
class RateDifference:
    """A corpus rate of system A minus system B, with a bootstrap confidence interval.

    ``low``/``high`` bound the central ``level`` fraction of the resampled differences;
    ``a_better`` is the fraction of resamples in which A has the lower rate.
    """

    difference: float
    low: float
    high: float
    level: float
    a_better: float


def paired_bootstrap(
    references: Sequence[str],
    hypotheses_a: Sequence[str],
    hypotheses_b: Sequence[str],
    resamples: int = 10_000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[RateDifference, RateDifference]:
    """WER and CER of A minus B on one test set, with paired bootstrap intervals.

    Each resample draws as many utterances as the set has, with replacement, and
    computes both systems' corpus rates on the same draw, so that what the utterances
    share (hard audio, rare words) cancels out of the difference.

    Parameters
    ----------
    references, hypotheses_a, hypotheses_b
        Aligned lists of N transcripts.
    resamples
        Number of bootstrap draws.
    level
        Coverage of the interval (0.95: the 2.5th to the 97.5th percentile).
    seed
        Seed of the draws, so that a report can be reproduced.

    Returns
    -------
    wer, cer : RateDifference
    """
    if not len(references) == len(hypotheses_a) == len(hypotheses_b):
        raise ValueError(
            f"{len(references)} references but {len(hypotheses_a)} and "
            f"{len(hypotheses_b)} hypotheses"
        )
    if not references:
        raise ValueError("paired_bootstrap needs at least one utterance")
    if resamples < 1 or not 0.0 < level < 1.0:
        raise ValueError(
            f"need resamples >= 1 and 0 < level < 1, got {resamples}, {level}"
        )
    # (N, 4) per utterance: word edits, words, character edits, characters
    counts_a = np.array(
        [_as_row(error_counts(r, h)) for r, h in zip(references, hypotheses_a)]
    )
    counts_b = np.array(
        [_as_row(error_counts(r, h)) for r, h in zip(references, hypotheses_b)]
    )
    # (resamples, 4) summed counts of each draw, drawn in chunks of about 2**22
    # utterance indices so that a large test set does not need resamples x N memory
    n = len(references)
    rng = np.random.default_rng(seed)
    chunk = max(1, (1 << 22) // n)
    totals_a = np.empty((resamples, 4), dtype=np.int64)
    totals_b = np.empty((resamples, 4), dtype=np.int64)
    for start in range(0, resamples, chunk):
        stop = min(start + chunk, resamples)
        draws = rng.integers(0, n, size=(stop - start, n))
        totals_a[start:stop] = counts_a[draws].sum(axis=1)
        totals_b[start:stop] = counts_b[draws].sum(axis=1)
    total_a = ErrorCounts(*(int(v) for v in counts_a.sum(axis=0)))
    total_b = ErrorCounts(*(int(v) for v in counts_b.sum(axis=0)))
    points = (total_a.wer - total_b.wer, total_a.cer - total_b.cer)
    tail = (1.0 - level) / 2.0
    results = []
    for (edits, length), point in zip(((0, 1), (2, 3)), points):
        with np.errstate(divide="ignore", invalid="ignore"):
            rate_a = totals_a[:, edits] / totals_a[:, length]
            rate_b = totals_b[:, edits] / totals_b[:, length]
        delta = rate_a - rate_b
        low, high = np.nanquantile(delta, [tail, 1.0 - tail])
        results.append(
            RateDifference(
                difference=point,
                low=float(low),
                high=float(high),
                level=level,
                a_better=float(np.mean(delta < 0)),
            )
        )
    return results[0], results[1]


def _as_row(counts: ErrorCounts) -> tuple[int, int, int, int]:
    return counts.word_edits, counts.words, counts.char_edits, counts.chars
