"""Word and character error rates.

Edit distances come from rapidfuzz's C++ Levenshtein, which accepts sequences of words as
well as strings. Corpus rates are the total edits over the total reference length (as
DeepSpeech and jiwer report them), not the mean of per-utterance rates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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
        """Word error rate; ``inf`` when the reference has no words but the hypothesis does."""
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
