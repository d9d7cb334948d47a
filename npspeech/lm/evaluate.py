"""Perplexity and out-of-vocabulary rate of text under an ARPA model, as KenLM counts.

Each sentence is scored as ``kenlm.Model.score(sentence, bos=True, eos=True)`` does:
``<s> w1 .. wn </s>`` with every word and ``</s>`` predicted; a word outside the
model's vocabulary is scored as ``<unk>``. The figures follow KenLM's ``query``:

- ``perplexity = 10 ** (-sum log10 P / tokens)`` over every predicted token (words and
  ``</s>``), out-of-vocabulary words included (at ``<unk>``'s probability);
- ``perplexity_without_oov`` leaves the out-of-vocabulary tokens out of both sums;
- ``oov_rate`` = out-of-vocabulary words / words (``</s>`` not counted).

Models with different vocabularies are compared fairly only with the OOV rate beside
the perplexity: a small vocabulary turns many words into one likely ``<unk>``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ..alphabet import Alphabet
from ..errors import DataError
from .arpa import Lookup, history_ids, sentence_tokens
from .build import EOS, normalize_sentences, read_text_lines


@dataclass(frozen=True)
class Evaluation:
    """Perplexity figures of a text under a model.

    Attributes
    ----------
    sentences, words, tokens : int
        Sentences, words (without ``<s>``/``</s>``), predicted tokens (words + one
        ``</s>`` per sentence).
    oov : int
        Words outside the model's vocabulary.
    log10_prob : float
        Sum of log10 P over every predicted token (what ``kenlm.Model.score`` sums).
    log10_prob_oov : float
        The part of ``log10_prob`` from out-of-vocabulary tokens.
    """

    sentences: int
    words: int
    tokens: int
    oov: int
    log10_prob: float
    log10_prob_oov: float

    @property
    def perplexity(self) -> float:
        """Per-token perplexity, out-of-vocabulary words included (KenLM's first)."""
        return math.pow(10.0, -self.log10_prob / self.tokens)

    @property
    def perplexity_without_oov(self) -> float:
        """Per-token perplexity over in-vocabulary tokens only."""
        kept = self.tokens - self.oov
        return math.pow(10.0, -(self.log10_prob - self.log10_prob_oov) / kept)

    @property
    def oov_rate(self) -> float:
        """Fraction of words outside the vocabulary."""
        return self.oov / self.words if self.words else 0.0

    def as_dict(self) -> dict:
        return {
            "sentences": self.sentences,
            "words": self.words,
            "tokens": self.tokens,
            "oov": self.oov,
            "oov_rate": self.oov_rate,
            "log10_prob": self.log10_prob,
            "perplexity": self.perplexity,
            "perplexity_without_oov": self.perplexity_without_oov,
        }


def token_log10_probs(
    lookup: Lookup, word_lists: Sequence[Sequence[str]]
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """log10 P of every predicted token of ``word_lists`` under the model.

    Returns
    -------
    log10_probs : ndarray of float64, shape (T,)
    known : ndarray of bool, shape (T,)
        Whether each token is in the model's vocabulary (``</s>`` always is).
    tokens : list of str
        The T predicted tokens (words and ``</s>``).
    """
    tokens, history, _ = sentence_tokens(word_lists, max(1, lookup.order - 1))
    ids, known = lookup.word_ids(tokens)
    contexts = history_ids(ids, history)  # (T, N-1)
    return lookup.log10_probs(contexts, ids), known, tokens


def evaluate(lookup: Lookup, word_lists: Sequence[Sequence[str]]) -> Evaluation:
    """Perplexity and OOV figures of normalised sentences (lists of words).

    Raises
    ------
    DataError
        When there is no sentence.
    """
    word_lists = [list(words) for words in word_lists]
    if not word_lists:
        raise DataError("no sentence to compute a perplexity on")
    log10_probs, known, tokens = token_log10_probs(lookup, word_lists)
    is_word = np.fromiter((t != EOS for t in tokens), dtype=bool, count=len(tokens))
    return Evaluation(
        sentences=len(word_lists),
        words=int(np.count_nonzero(is_word)),
        tokens=len(tokens),
        oov=int(np.count_nonzero(~known)),
        log10_prob=float(log10_probs.sum()),
        log10_prob_oov=float(log10_probs[~known].sum()),
    )


def read_sentences(
    paths: Sequence[str | os.PathLike],
    alphabet: Alphabet | None = None,
    progress: bool = False,
) -> list[list[str]]:
    """Normalised sentences (lists of words) of text files, gzip files or corpus CSVs.

    Text is folded into the alphabet exactly as ``npspeech lm build`` folds it, so
    words are spelt the same way as in models built here.
    """
    lines: Iterable[str] = read_text_lines(paths, progress=progress)
    return list(normalize_sentences(lines, alphabet))
