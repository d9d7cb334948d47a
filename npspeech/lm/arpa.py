"""ARPA models as sorted arrays: reading, vectorised backoff queries, sentence tokens.

:func:`read_arpa` loads an ARPA file into the :class:`~npspeech.lm.build.NgramModel`
arrays that :mod:`npspeech.lm.build` writes, so interpolation, pruning and evaluation
work on millions of n-grams without Python dictionaries. :class:`Lookup` answers
``log10 P(w | h)`` for many (history, word) pairs at once with the standard ARPA
backoff rule

    P(w | h) = p(h w)                  if ``h w`` is listed,
             = bow(h) * P(w | h')       otherwise (``h'``: ``h`` without its first word,
                                        ``bow(h) = 1`` when ``h`` is not listed),

which is what ``kenlm.Model.score`` computes on a prefix- and suffix-closed file (the
files npspeech writes are). The dictionary oracle :class:`~npspeech.lm.build.ArpaModel`
evaluates the same rule one word at a time; the tests compare the two and KenLM.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from ..errors import ScorerError
from .build import (
    ARPA_NEVER,
    BOS,
    BOS_ID,
    EOS,
    EOS_ID,
    UNK,
    UNK_ID,
    NgramModel,
    OrderTable,
    _keys,
    _open_text,
    _unique_rows,
)

# KenLM gives a model without <unk> this log10 probability for it (lm/read_arpa.hh).
MISSING_UNK_LOG10 = -100.0
PROGRESS_MIN_NGRAMS = 1 << 20  # progress bars for models of a million n-grams or more
_BAR_STEP = 1 << 16  # n-gram lines between progress-bar updates


def read_arpa(path: str | os.PathLike, progress: bool = False) -> NgramModel:
    """Read an ARPA file (plain or gzip) into sorted n-gram arrays.

    Word ids follow the file's unigram order, with ``<unk>``, ``<s>`` and ``</s>`` moved
    to ids 0, 1 and 2. A file without ``<unk>`` gets one with log10 probability -100,
    as KenLM does. Counts, discounts and sentence totals are unknown (zeros).
    ``progress`` shows a bar (stderr) for files of a million n-grams or more.

    Raises
    ------
    ScorerError
        Naming the file and line of a malformed entry, an unknown word in an n-gram,
        a duplicate n-gram, a count that disagrees with the header, or a missing
        ``<s>``/``</s>``.
    """
    path = Path(path)
    if not path.is_file():
        raise ScorerError(f"{path}: language model not found")
    header: dict[int, int] = {}
    sections: list[tuple[list[float], list[str], list[float], list[bool], int]] = []
    current = 0
    bar, pending = None, 0
    with _open_text(path) as text:
        try:
            for line_number, line in enumerate(text, start=1):
                fields = line.split()
                if not fields:
                    continue
                first = fields[0]
                if first.startswith("\\"):
                    if first == "\\end\\":
                        break
                    if first == "\\data\\":
                        continue
                    if first.endswith("-grams:"):
                        current = _section_order(first, path, line_number)
                        if current != len(sections) + 1:
                            raise ScorerError(
                                f"{path}:{line_number}: sections out of order"
                            )
                        sections.append(([], [], [], [], line_number))
                        if current == 1:
                            bar = _bar(progress, sum(header.values()), path)
                        continue
                if first == "ngram" and current == 0:
                    k, _, n = fields[1].partition("=")
                    try:
                        header[int(k)] = int(n)
                    except ValueError:
                        raise ScorerError(
                            f"{path}:{line_number}: bad header line {line.strip()!r}"
                        ) from None
                    continue
                if current == 0 or len(fields) not in (current + 1, current + 2):
                    raise ScorerError(
                        f"{path}:{line_number}: malformed line {line.strip()!r}"
                    )
                probs, words, backoffs, has_backoff, _ = sections[-1]
                try:
                    probs.append(float(first))
                    has = len(fields) == current + 2
                    backoffs.append(float(fields[-1]) if has else 0.0)
                except ValueError:
                    raise ScorerError(
                        f"{path}:{line_number}: not a number in {line.strip()!r}"
                    ) from None
                has_backoff.append(has)
                words.extend(fields[1 : current + 1])
                pending += 1
                if bar is not None and pending == _BAR_STEP:
                    bar.update(pending)
                    pending = 0
        except UnicodeDecodeError as error:
            raise ScorerError(f"{path}: not UTF-8 text ({error.reason})") from None
        finally:
            if bar is not None:
                bar.close()
    if not sections:
        raise ScorerError(f"{path}: no n-gram sections (not an ARPA file?)")
    for k, (probs, *_rest) in enumerate(sections, start=1):
        if header.get(k) != len(probs):
            raise ScorerError(
                f"{path}: header says {header.get(k)} {k}-grams, found {len(probs)}"
            )
    return _to_model(sections, path)


def _bar(progress: bool, total: int, path: Path):
    if not progress or total < PROGRESS_MIN_NGRAMS:
        return None
    from tqdm import tqdm

    return tqdm(
        total=total, unit="n-gram", unit_scale=True, desc=f"reading {path.name}"
    )


def _section_order(token: str, path: Path, line_number: int) -> int:
    try:
        return int(token[1:].split("-")[0])
    except ValueError:
        raise ScorerError(f"{path}:{line_number}: bad section {token!r}") from None


def _to_model(sections, path: Path) -> NgramModel:
    unigram_probs, unigram_words, unigram_backoffs, unigram_has, line = sections[0]
    for special in (BOS, EOS):
        if special not in unigram_words:
            raise ScorerError(f"{path}: no {special} unigram")
    if UNK not in unigram_words:
        unigram_words = [UNK, *unigram_words]
        unigram_probs = [MISSING_UNK_LOG10, *unigram_probs]
        unigram_backoffs = [0.0, *unigram_backoffs]
        unigram_has = [False, *unigram_has]
    specials = [UNK, BOS, EOS]
    vocabulary = specials + [w for w in unigram_words if w not in specials]
    index = {word: i for i, word in enumerate(vocabulary)}
    if len(index) != len(unigram_words):
        raise ScorerError(f"{path}:{line}: a unigram is listed twice")
    bits = max(1, (len(vocabulary) - 1).bit_length())
    first = (unigram_probs, unigram_words, unigram_backoffs, unigram_has, line)
    sections = [first, *sections[1:]]
    tables = []
    for k, (probs, words, backoffs, has_backoff, line) in enumerate(sections, start=1):
        try:
            ids = np.fromiter(map(index.__getitem__, words), np.int32, len(words))
        except KeyError as error:
            raise ScorerError(
                f"{path}: a {k}-gram (section at line {line}) uses {error.args[0]!r}, "
                "which is not a unigram"
            ) from None
        rows = ids.reshape(-1, k)  # (M, k)
        keys = _keys(rows, bits)
        order = np.argsort(keys, kind="stable")
        keys = keys[order]
        if keys.size > 1 and np.any(keys[1:] == keys[:-1]):
            raise ScorerError(f"{path}: a {k}-gram is listed twice")
        M = rows.shape[0]
        table = OrderTable(
            rows[order], np.zeros(M, np.int64), np.zeros(M, np.int64), bits
        )
        table.log10_prob = np.asarray(probs, dtype=np.float64)[order]
        table.log10_backoff = np.asarray(backoffs, dtype=np.float64)[order]
        table.is_context = np.asarray(has_backoff, dtype=bool)[order]
        tables.append(table)
    return NgramModel(vocabulary, tables, [], [], 0, 0)


class Lookup:
    """Vectorised ``log10 P(word | history)`` of an :class:`NgramModel`.

    Parameters
    ----------
    model : NgramModel
        Tables sorted by word ids (as :func:`read_arpa` and the builders make them).
    """

    def __init__(self, model: NgramModel):
        self.model = model
        self.sorted_keys = [table.keys for table in model.orders]
        self.index = {word: i for i, word in enumerate(model.vocabulary)}

    @property
    def order(self) -> int:
        return self.model.order

    def find(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Position of each row of ``rows`` (Q, k) int32 in the k-gram table.

        Returns ``(index (Q,) int64, found (Q,) bool)``; ``index`` is meaningless where
        ``found`` is false.
        """
        k = rows.shape[1]
        table = self.model.orders[k - 1]
        sorted_keys = self.sorted_keys[k - 1]
        keys = _keys(rows, table.bits)
        index = np.searchsorted(sorted_keys, keys)
        inside = index < sorted_keys.size
        found = np.zeros(rows.shape[0], dtype=bool)
        found[inside] = sorted_keys[index[inside]] == keys[inside]
        return np.where(inside, index, 0), found

    def log10_probs(self, contexts: np.ndarray, words: np.ndarray) -> np.ndarray:
        """log10 P(word | context) with backoff, for many pairs at once.

        Parameters
        ----------
        contexts : ndarray of int32, shape (Q, C)
            Word ids of each history, right-aligned (the last column is the word just
            before), -1 before a history's start. Only the last ``order - 1`` columns
            are used.
        words : ndarray of int32, shape (Q,)
            Ids of the predicted words (map out-of-vocabulary words to ``<unk>``).

        Returns
        -------
        ndarray of float64, shape (Q,)
        """
        contexts = np.asarray(contexts, dtype=np.int32)
        words = np.asarray(words, dtype=np.int32)
        Q, C = contexts.shape
        history_length = np.count_nonzero(contexts >= 0, axis=1)  # (Q,)
        result = np.zeros(Q)
        backoff = np.zeros(Q)  # summed log10 backoffs of the histories left so far
        done = np.zeros(Q, dtype=bool)
        for m in range(min(C, self.order - 1), -1, -1):  # longest history first
            active = np.flatnonzero(~done & (history_length >= m))
            if active.size == 0:
                continue
            rows = np.concatenate(
                [contexts[active, C - m :], words[active, None]], axis=1
            )  # (A, m + 1)
            index, found = self.find(rows)
            hit = active[found]
            result[hit] = backoff[hit] + self.model.orders[m].log10_prob[index[found]]
            done[hit] = True
            if m > 0:
                missed = active[~found]
                history, listed = self.find(contexts[missed, C - m :])
                table = self.model.orders[m - 1]
                backoff[missed[listed]] += table.log10_backoff[history[listed]]
        if not np.all(done):
            raise ScorerError("a word id is not a unigram of the model")
        return result

    def word_ids(self, words: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Ids (N,) int32 of ``words`` (unknown ones: ``<unk>``) and known (N,) bool."""
        ids = np.fromiter(
            (self.index.get(w, -1) for w in words), dtype=np.int32, count=len(words)
        )
        known = ids >= 0
        return np.where(known, ids, UNK_ID).astype(np.int32), known


def sentence_tokens(
    word_lists: Iterable[Sequence[str]], context_size: int
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The predicted tokens of sentences and their histories, as KenLM scores them.

    Each sentence is ``<s> w1 .. wn </s>``: ``w1 .. wn`` and ``</s>`` are predicted,
    each from the up to ``context_size`` tokens before it in its sentence.

    Returns
    -------
    tokens : list of str
        The T predicted tokens, sentence after sentence.
    history : ndarray of int64, shape (T, context_size)
        Position in ``tokens`` of each history word, right-aligned; -1 before the
        sentence start, -2 for the ``<s>`` that opens it.
    sentence : ndarray of int64, shape (T,)
        Index of the sentence of each token.
    """
    tokens: list[str] = []
    lengths = []
    for words in word_lists:
        tokens.extend(words)
        tokens.append(EOS)
        lengths.append(len(words) + 1)
    lengths = np.asarray(lengths, dtype=np.int64)
    T = len(tokens)
    starts = np.cumsum(lengths) - lengths  # (S,) first predicted token of each
    sentence = np.repeat(np.arange(lengths.size), lengths)  # (T,)
    position = np.arange(T) - starts[sentence]  # (T,) 0 for the first word
    history = np.full((T, context_size), -1, dtype=np.int64)
    for j in range(1, context_size + 1):  # j tokens back
        column = context_size - j
        back = position - j
        history[back >= 0, column] = np.arange(T)[back >= 0] - j
        history[back == -1, column] = -2  # the <s> at the sentence start
    return tokens, history, sentence


def history_ids(token_ids: np.ndarray, history: np.ndarray) -> np.ndarray:
    """Word ids (T, C) int32 of :func:`sentence_tokens` histories (``<s>``: its id)."""
    ids = np.where(history >= 0, token_ids[np.maximum(history, 0)], -1)
    return np.where(history == -2, BOS_ID, ids).astype(np.int32)


def union_rows(blocks: Sequence[np.ndarray], bits: int) -> np.ndarray:
    """Distinct rows (sorted) of several (M_i, k) int32 blocks."""
    return _unique_rows(np.concatenate(blocks).astype(np.int32), bits)[0]


__all__ = [
    "ARPA_NEVER",
    "BOS_ID",
    "EOS_ID",
    "Lookup",
    "MISSING_UNK_LOG10",
    "history_ids",
    "read_arpa",
    "read_language_model",
    "sentence_tokens",
    "union_rows",
]


def read_language_model(path: str | os.PathLike, progress: bool = False) -> NgramModel:
    """An ARPA file (plain or gzip) or an npspeech scorer package holding one.

    Raises
    ------
    ScorerError
        For KenLM binaries and DeepSpeech scorers (they hold no ARPA text to work on)
        and for any file :func:`read_arpa` rejects.
    """
    from .package import open_scorer

    scorer = open_scorer(path)
    source = scorer.language_model_path
    if scorer.kind == "npspeech" and open_scorer(source).kind == "arpa":
        return read_arpa(source, progress)
    if scorer.kind != "arpa":
        raise ScorerError(
            f"{scorer.path}: a {scorer.kind.replace('_', ' ')} file holds no ARPA "
            "text; interpolation, pruning and evaluation need the ARPA model"
        )
    return read_arpa(source, progress)
