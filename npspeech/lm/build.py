"""ARPA n-gram models from text with interpolated modified Kneser-Ney, as lmplz does.

The estimate follows Chen & Goodman (1998, "An empirical study of smoothing techniques
for language modeling", sections 3.4 and 4.1.6) with lmplz's conventions (Heafield et
al. 2013, "Scalable modified Kneser-Ney language model estimation"):

- Each sentence is ``<s> w1 ... wn </s>``. An n-gram ends at every token but ``<s>`` and
  starts no earlier than ``<s>``, so ``<s>`` opens lower-order n-grams only.
- Adjusted counts ``a``: the raw count for the highest order and for n-grams starting
  with ``<s>`` (nothing can precede ``<s>``); otherwise the number of distinct words
  seen immediately before the n-gram (its continuation count).
- Discounts per order from the count-of-counts ``n_r`` (n-grams with ``a == r``):
  ``Y = n1 / (n1 + 2 n2)``, ``D_r = r - (r + 1) Y n_{r+1} / n_r`` for r = 1, 2, 3+.
  Where these are undefined or outside ``(0, r]`` (tiny corpora), lmplz's
  ``--discount_fallback`` values ``constants.KN_FALLBACK_DISCOUNTS`` are used and
  ``NgramModel.fallback`` says so. The ``<s>`` unigram is left out of the
  count-of-counts (it is never predicted).
- For a context ``h`` and word ``w``: ``u(w|h) = (a(hw) - D(a(hw))) / sum_x a(hx)`` and
  ``gamma(h) = (D1 N1(h) + D2 N2(h) + D3+ N3+(h)) / sum_x a(hx)``, with ``N_r(h)`` the
  number of words following ``h`` with adjusted count r (3 or more for N3+).
- Interpolation: ``p(w|h) = u(w|h) + gamma(h) p(w|h')`` with ``h'`` the context without
  its first word; unigrams interpolate with the uniform distribution over the vocabulary
  including ``<unk>`` and ``</s>`` but not ``<s>`` (lmplz's ``uniform_prob``).
  ``<unk>`` thus gets exactly ``gamma() / |V|`` unless ``vocab_size`` maps real words to
  it.
- ARPA backoff of a context = ``gamma(h)``, which makes every history's distribution sum
  to one; ``<s>`` is written with log-probability -99 (it is never predicted).

Pruning (``prune``, like lmplz ``--prune``): n-grams of order >= 2 whose *raw* count is
at most the order's threshold are dropped; then every prefix and suffix of a kept n-gram
is kept too, so each context has its own entry and backoff evaluation meets only stored
lower orders. Kept n-grams keep their unpruned interpolated probability, and each
context's backoff becomes ``(1 - sum_S p(w|h)) / (1 - sum_S p(w|h'))`` over its kept
continuations ``S``: the standard renormalisation, which again sums to one.

Counting works on integer n-gram arrays sorted with NumPy (not Python dicts): a few
million words build in seconds (see benchmarks/RESULTS.md).
"""

from __future__ import annotations

import gzip
import io
import math
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import TextIO

import numpy as np

from .. import constants as C
from ..alphabet import Alphabet, english
from ..errors import ConfigError, DataError, ScorerError
from ..fileio import write_atomically

UNK, BOS, EOS = "<unk>", "<s>", "</s>"
UNK_ID, BOS_ID, EOS_ID = 0, 1, 2  # word ids of the special tokens
ARPA_NEVER = -99.0  # log10 "probability" ARPA files give <s>, which is never predicted
_PROGRESS_MIN_BYTES = 1 << 24  # show a progress bar for inputs larger than 16 MiB
_NORMALIZE_CACHE_SIZE = 1 << 20  # distinct tokens remembered while normalising text


# --- n-gram arrays --------------------------------------------------------------------
def _keys(rows: np.ndarray, bits: int) -> np.ndarray:
    """One sortable key per row of ``rows`` (M, k) int32, ordered like the rows.

    With word ids below ``2**bits`` and ``k * bits <= 64``, the key packs the ids into
    one uint64, first word most significant (integer sorts are several times faster).
    Otherwise it is the rows' big-endian bytes as np.void: comparing the big-endian
    bytes of non-negative integers orders rows exactly like comparing them column by
    column. Either way sorting and ``searchsorted`` on keys are lexicographic on the
    word ids.
    """
    M, k = rows.shape
    if k * bits <= 64:
        key = np.zeros(M, dtype=np.uint64)
        for column in range(k):
            key = (key << np.uint64(bits)) | rows[:, column].astype(np.uint64)
        return key
    big_endian = np.ascontiguousarray(rows.astype(">u4"))  # (M, k)
    return big_endian.view(f"V{4 * k}").reshape(M)


def _unique_rows(rows: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of ``rows`` (M, k) int32, sorted, and their counts (int64)."""
    keys = _keys(rows, bits)
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    firsts = np.ones(keys.shape[0], dtype=bool)
    firsts[1:] = keys[1:] != keys[:-1]
    starts = np.flatnonzero(firsts)
    counts = np.diff(np.append(starts, keys.shape[0]))
    return rows[order[starts]], counts.astype(np.int64)


def _lookup(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Index of each of ``keys`` in ``sorted_keys`` (all must be present)."""
    index = np.searchsorted(sorted_keys, keys)
    if keys.size and (
        index.max(initial=0) >= sorted_keys.size or np.any(sorted_keys[index] != keys)
    ):
        # A bug, not bad input: unpruned and closed tables always hold these.
        raise AssertionError("an n-gram's context or suffix is missing")
    return index


@dataclass
class OrderTable:
    """The n-grams of one order, sorted lexicographically by word ids.

    Attributes
    ----------
    ngrams : ndarray of int32, shape (M, k)
        Word ids of each n-gram, in sorted order.
    raw_counts : ndarray of int64, shape (M,)
        Occurrences in the corpus.
    adjusted : ndarray of int64, shape (M,)
        Kneser-Ney adjusted counts.
    log10_prob : ndarray of float64, shape (M,)
        Interpolated log10 probability of the last word given the others.
    log10_backoff : ndarray of float64, shape (M,)
        log10 backoff weight where the n-gram is a context, else 0.
    is_context : ndarray of bool, shape (M,)
        Whether some kept (k+1)-gram extends this n-gram.
    bits : int
        Bits per word id when packing rows into sort keys.
    """

    ngrams: np.ndarray
    raw_counts: np.ndarray
    adjusted: np.ndarray
    bits: int = 32  # bits per word id in keys (see _keys)
    log10_prob: np.ndarray = field(default=None)  # type: ignore[assignment]
    log10_backoff: np.ndarray = field(default=None)  # type: ignore[assignment]
    is_context: np.ndarray = field(default=None)  # type: ignore[assignment]

    @property
    def keys(self) -> np.ndarray:
        return _keys(self.ngrams, self.bits)


@dataclass
class NgramModel:
    """A backoff n-gram model as arrays (what :func:`build_arpa` returns).

    Attributes
    ----------
    vocabulary : list of str
        Word of each id: ``<unk>``, ``<s>``, ``</s>``, then words by falling frequency.
    orders : list of OrderTable
        One table per order, unigrams first.
    discounts : list of tuple of float
        ``(D1, D2, D3+)`` of each order.
    fallback : list of bool
        Whether each order used the fallback discounts.
    n_sentences, n_words : int
        Sentences and words (without ``<s>``/``</s>``) counted.
    """

    vocabulary: list[str]
    orders: list[OrderTable]
    discounts: list[tuple[float, float, float]]
    fallback: list[bool]
    n_sentences: int
    n_words: int

    @property
    def order(self) -> int:
        """Highest n-gram order."""
        return len(self.orders)

    def counts(self) -> list[int]:
        """Number of n-grams of each order (as the ARPA header gives them)."""
        return [int(table.ngrams.shape[0]) for table in self.orders]


# --- reading text ---------------------------------------------------------------------
def _open_text(path: Path) -> TextIO:
    try:
        with open(path, "rb") as handle:
            compressed = handle.read(2) == b"\x1f\x8b"
    except FileNotFoundError:
        raise DataError(f"{path}: text file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, not a text file") from None
    if compressed:
        return io.TextIOWrapper(
            gzip.open(path, "rb"), encoding="utf-8", errors="strict"
        )
    return open(path, encoding="utf-8", errors="strict")


def read_text_lines(
    paths: Sequence[str | os.PathLike], progress: bool = False
) -> Iterator[str]:
    """Lines of plain or gzip-compressed UTF-8 text files, one sentence per line.

    A corpus CSV (``.csv``, DeepSpeech's ``wav_filename,wav_filesize,transcript``)
    gives its transcript column instead.

    A progress bar (tqdm, on stderr, by bytes of input) is shown when ``progress`` is
    true and the inputs exceed 16 MiB.

    Raises
    ------
    DataError
        Naming the file (and line) that is missing or not UTF-8.
    """
    paths = [Path(p) for p in paths]
    for path in paths:
        if not path.is_file():
            raise DataError(f"{path}: text file not found")
    total = sum(path.stat().st_size for path in paths)
    bar = None
    if progress and total >= _PROGRESS_MIN_BYTES:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="B", unit_scale=True, desc="reading text")
    try:
        for path in paths:
            if path.name.lower().endswith((".csv", ".csv.gz")):
                yield from _csv_transcripts(path)
                if bar is not None:
                    bar.update(path.stat().st_size)
                continue
            with open(path, "rb") as raw:
                compressed = raw.read(2) == b"\x1f\x8b"
                raw.seek(0)
                binary = gzip.open(raw, "rb") if compressed else raw
                try:
                    for line_number, line in enumerate(binary, start=1):
                        if bar is not None and not compressed:
                            bar.update(len(line))
                        try:
                            text = line.decode("utf-8")
                        except UnicodeDecodeError as error:
                            raise DataError(
                                f"{path}:{line_number}: not UTF-8 text ({error.reason})"
                            ) from None
                        yield text
                except (OSError, EOFError) as error:
                    raise DataError(f"{path}: cannot read ({error})") from None
                if bar is not None and compressed:
                    bar.update(path.stat().st_size)
    finally:
        if bar is not None:
            bar.close()


def _csv_transcripts(path: Path) -> Iterator[str]:
    """The ``transcript`` column of a corpus CSV (DeepSpeech layout), row by row."""
    import csv

    with _open_text(path) as text:
        try:
            reader = csv.reader(text)
            header = next(reader, [])
            if "transcript" not in header:
                raise DataError(f"{path}: a corpus CSV needs a 'transcript' column")
            column = header.index("transcript")
            for row_number, row in enumerate(reader, start=2):
                if len(row) != len(header):
                    raise DataError(
                        f"{path}:{row_number}: {len(row)} fields, the header has "
                        f"{len(header)}"
                    )
                yield row[column]
        except (UnicodeDecodeError, csv.Error) as error:
            raise DataError(f"{path}: cannot read as a corpus CSV ({error})") from None


def normalize_sentences(
    lines: Iterable[str], alphabet: Alphabet | None = None
) -> Iterator[list[str]]:
    """Words of each line after :meth:`Alphabet.normalize`; empty lines are skipped.

    ``normalize`` maps characters one at a time and then splits on spaces, so with an
    alphabet that has a space label a line's words are the normalised words of its
    whitespace-separated tokens. Tokens repeat (Zipf), so each distinct token is
    normalised once and cached; alphabets without a space go line by line.
    """
    alphabet = alphabet or english()
    if alphabet.space is None:
        for line in lines:
            text = alphabet.normalize(line)
            if text:
                yield [text]
        return
    cache: dict[str, list[str]] = {}
    for line in lines:
        words: list[str] = []
        for token in line.split():
            folded = cache.get(token)
            if folded is None:
                folded = alphabet.normalize(token).split()
                if len(cache) < _NORMALIZE_CACHE_SIZE:
                    cache[token] = folded
            words.extend(folded)
        if words:
            yield words


# --- estimation -----------------------------------------------------------------------
def build_arpa(
    sentences: Iterable[str],
    order: int = C.LM_ORDER,
    *,
    prune: Sequence[int] | None = None,
    vocab_size: int | None = None,
    alphabet: Alphabet | None = None,
    normalize: bool = True,
) -> NgramModel:
    """Estimate an interpolated modified Kneser-Ney model from sentences.

    Parameters
    ----------
    sentences
        One sentence per string.
    order
        Highest n-gram order (>= 1).
    prune
        Raw-count thresholds per order, unigrams first (like lmplz ``--prune``): an
        n-gram of order k >= 2 with count <= ``prune[k-1]`` is dropped; the last value
        repeats for higher orders. The unigram threshold must be 0. None keeps
        everything.
    vocab_size
        Keep only the ``vocab_size`` most frequent words (ties broken alphabetically);
        the others become ``<unk>``. None keeps every word.
    alphabet
        Text is folded into this alphabet (:meth:`Alphabet.normalize`) when
        ``normalize``; DeepSpeech's English alphabet by default.
    normalize
        False takes the sentences as already normalised, split on whitespace.

    Returns
    -------
    NgramModel

    Raises
    ------
    ConfigError
        For an order below 1, a bad threshold list or vocabulary size.
    DataError
        When no sentence has a word.
    """
    if not isinstance(order, int) or order < 1:
        raise ConfigError(f"order must be an integer >= 1, got {order!r}")
    thresholds = _prune_thresholds(prune, order)
    if vocab_size is not None and (not isinstance(vocab_size, int) or vocab_size < 1):
        raise ConfigError(f"vocab_size must be a positive integer, got {vocab_size!r}")
    if normalize:
        word_lists = list(normalize_sentences(sentences, alphabet))
    else:
        word_lists = [s.split() for s in sentences if s.split()]
    if not word_lists:
        raise DataError("no sentence with a word to build a language model from")
    vocabulary, ids, positions = _encode(word_lists, vocab_size)
    tables = _count(
        ids, positions, order, bits=max(1, (len(vocabulary) - 1).bit_length())
    )
    _adjust_counts(tables)
    discounts, fallback = _discounts(tables)
    _interpolate(tables, discounts, n_targets=len(vocabulary) - 1)
    if any(thresholds):
        _prune(tables, thresholds)
        _renormalised_backoffs(tables)
    return NgramModel(
        vocabulary=vocabulary,
        orders=tables,
        discounts=discounts,
        fallback=fallback,
        n_sentences=len(word_lists),
        n_words=int(ids.size - 2 * len(word_lists)),
    )


def _prune_thresholds(prune: Sequence[int] | None, order: int) -> list[int]:
    if prune is None:
        return [0] * order
    values = list(prune)
    if not values or any(not isinstance(v, int) or v < 0 for v in values):
        raise ConfigError(f"prune thresholds must be integers >= 0, got {values!r}")
    if values[0] != 0:
        raise ConfigError(
            "unigrams cannot be pruned: the first prune threshold must be 0"
        )
    if any(b < a for a, b in zip(values, values[1:], strict=False)):
        raise ConfigError(
            f"prune thresholds must not decrease with the order: {values}"
        )
    return (values + [values[-1]] * order)[:order]


def _encode(
    word_lists: list[list[str]], vocab_size: int | None
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Word ids of the padded corpus and each token's position in its sentence.

    Returns the vocabulary (id -> word), ids (N,) int32 of ``<s> w.. </s>`` per
    sentence, and positions (N,) int32 (0 at each ``<s>``).
    """
    flat = list(chain.from_iterable(word_lists))  # every word, in order
    frequencies = Counter(flat)
    for special in (UNK, BOS, EOS):
        if special in frequencies:
            raise DataError(f"the text contains the reserved token {special!r}")
    ranked = sorted(frequencies, key=lambda w: (-frequencies[w], w))
    kept = ranked if vocab_size is None else ranked[:vocab_size]
    vocabulary = [UNK, BOS, EOS] + kept
    index = dict.fromkeys(ranked, UNK_ID)  # words beyond vocab_size stay <unk>
    index.update((word, i) for i, word in enumerate(vocabulary))
    word_ids = np.fromiter(
        map(index.__getitem__, flat), dtype=np.int32, count=len(flat)
    )
    lengths = (
        np.fromiter(map(len, word_lists), dtype=np.int64, count=len(word_lists)) + 2
    )
    starts = np.cumsum(lengths) - lengths  # (S,) index of each sentence's <s>
    ids = np.empty(int(lengths.sum()), dtype=np.int32)
    is_word = np.ones(ids.size, dtype=bool)
    is_word[starts] = False
    is_word[starts + lengths - 1] = False
    ids[starts] = BOS_ID
    ids[starts + lengths - 1] = EOS_ID
    ids[is_word] = word_ids
    positions = (np.arange(ids.size) - np.repeat(starts, lengths)).astype(np.int32)
    return vocabulary, ids, positions


def _count(
    ids: np.ndarray, positions: np.ndarray, order: int, bits: int
) -> list[OrderTable]:
    tables = []
    for k in range(1, order + 1):
        # n-grams end at every token but <s> and start at or after their sentence's <s>.
        ends = np.flatnonzero((positions >= k - 1) & (positions >= 1))
        ngrams = np.stack([ids[ends - (k - 1) + j] for j in range(k)], axis=1)  # (M, k)
        if k == 1:
            # <s> and <unk> are unigrams even when never predicted (count 0).
            ngrams = np.concatenate([ngrams, [[BOS_ID], [UNK_ID]]]).astype(np.int32)
        table_rows, counts = _unique_rows(ngrams, bits)
        if k == 1:
            counts[table_rows[:, 0] == BOS_ID] = int(np.count_nonzero(positions == 0))
            counts[table_rows[:, 0] == UNK_ID] -= 1  # remove the placeholder
        tables.append(OrderTable(table_rows, counts, counts.copy(), bits))
    return tables


def _adjust_counts(tables: list[OrderTable]) -> None:
    """Turn counts below the highest order into continuation counts (see module doc)."""
    for k in range(len(tables) - 1):
        lower, higher = tables[k], tables[k + 1]
        # (M_higher,) keys of each (k+1)-gram without its first word
        suffixes = _keys(higher.ngrams[:, 1:], higher.bits)
        unique, extensions = np.unique(suffixes, return_counts=True)
        adjusted = np.zeros_like(lower.raw_counts)
        found = np.searchsorted(unique, lower.keys)
        present = found < unique.size
        present[present] = unique[found[present]] == lower.keys[present]
        adjusted[present] = extensions[found[present]]
        starts_with_bos = lower.ngrams[:, 0] == BOS_ID
        adjusted[starts_with_bos] = lower.raw_counts[starts_with_bos]
        lower.adjusted = adjusted


def _discounts(
    tables: list[OrderTable],
) -> tuple[list[tuple[float, float, float]], list[bool]]:
    discounts, fallback = [], []
    for k, table in enumerate(tables, start=1):
        adjusted = table.adjusted
        if k == 1:
            adjusted = adjusted[table.ngrams[:, 0] != BOS_ID]
        n = [int(np.count_nonzero(adjusted == r)) for r in range(5)]  # n[r], r = 0..4
        values = None
        if n[1] > 0 and n[2] > 0 and n[3] > 0:
            y = n[1] / (n[1] + 2.0 * n[2])
            values = tuple(r - (r + 1) * y * n[r + 1] / n[r] for r in (1, 2, 3))
            if any(not 0.0 < d <= r for r, d in zip((1, 2, 3), values, strict=True)):
                values = None
        fallback.append(values is None)
        discounts.append(
            values if values is not None else tuple(C.KN_FALLBACK_DISCOUNTS)
        )
    return discounts, fallback


def _context_groups(table: OrderTable, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Group id of each n-gram's context (its first k-1 words) and each group's start.

    Rows are sorted, so n-grams sharing a context are contiguous.
    """
    M = table.ngrams.shape[0]
    if k == 1:
        return np.zeros(M, dtype=np.int64), np.zeros(1, dtype=np.int64)
    contexts = table.ngrams[:, : k - 1]
    changes = np.ones(M, dtype=bool)
    changes[1:] = np.any(contexts[1:] != contexts[:-1], axis=1)
    return np.cumsum(changes) - 1, np.flatnonzero(changes)


def _interpolate(
    tables: list[OrderTable],
    discounts: list[tuple[float, float, float]],
    n_targets: int,
) -> None:
    """Fill in interpolated probabilities and (unpruned) backoffs, order by order."""
    lower_prob = None
    for k, table in enumerate(tables, start=1):
        d1, d2, d3 = discounts[k - 1]
        a = table.adjusted.astype(np.float64)
        predicted = table.ngrams[:, -1] != BOS_ID  # <s> is never a target
        discount = np.where(a >= 3, d3, np.where(a == 2, d2, d1)) * (a > 0)
        groups, firsts = _context_groups(table, k)
        G = firsts.size
        weight = np.where(predicted, 1.0, 0.0)
        total = np.bincount(groups, weights=a * weight, minlength=G)  # sum_x a(hx)
        n1 = np.bincount(groups, weights=(a == 1) * weight, minlength=G)
        n2 = np.bincount(groups, weights=(a == 2) * weight, minlength=G)
        n3 = np.bincount(groups, weights=(a >= 3) * weight, minlength=G)
        gamma = (d1 * n1 + d2 * n2 + d3 * n3) / total  # (G,)
        u = (a - discount) / total[groups]
        if k == 1:
            prob = u + gamma[0] / n_targets
        else:
            suffixes = _keys(table.ngrams[:, 1:], table.bits)
            suffix_index = _lookup(tables[k - 2].keys, suffixes)
            prob = u + gamma[groups] * lower_prob[suffix_index]
        prob = np.where(predicted, prob, 0.0)
        table.log10_prob = np.full(prob.shape, ARPA_NEVER)
        table.log10_prob[predicted] = np.log10(prob[predicted])
        lower_prob = prob
        table.log10_backoff = np.zeros(prob.shape)
        table.is_context = np.zeros(prob.shape, dtype=bool)
        if k > 1:
            # The context (k-1)-gram of each group gets gamma as its backoff.
            previous = tables[k - 2]
            contexts = _keys(table.ngrams[firsts, : k - 1], table.bits)
            context_index = _lookup(previous.keys, contexts)
            previous.log10_backoff[context_index] = np.log10(gamma)
            previous.is_context[context_index] = True


def _select(table: OrderTable, keep: np.ndarray) -> None:
    table.ngrams = table.ngrams[keep]
    table.raw_counts = table.raw_counts[keep]
    table.adjusted = table.adjusted[keep]
    table.log10_prob = table.log10_prob[keep]
    table.log10_backoff = table.log10_backoff[keep]
    table.is_context = table.is_context[keep]


def _prune(tables: list[OrderTable], thresholds: list[int]) -> None:
    """Drop rare n-grams, then restore every prefix and suffix of what is kept."""
    keep = [np.ones(t.ngrams.shape[0], dtype=bool) for t in tables]
    for k in range(len(tables) - 1, 0, -1):  # highest order first; unigrams stay
        table = tables[k]
        keep[k] &= table.raw_counts > thresholds[k]
        if k + 1 < len(tables):
            higher = tables[k + 1].ngrams[keep[k + 1]]
            needed = np.concatenate(
                [_keys(higher[:, :-1], table.bits), _keys(higher[:, 1:], table.bits)]
            )
            keep[k][np.isin(table.keys, needed)] = True
    # Unigrams: prefixes/suffixes of kept bigrams are unigrams, which are all kept.
    for table, mask in zip(tables, keep, strict=True):
        _select(table, mask)


def _renormalised_backoffs(tables: list[OrderTable]) -> None:
    """Backoffs that make each context's distribution sum to one after pruning."""
    for table in tables:
        table.log10_backoff[:] = 0.0
        table.is_context[:] = False
    for k in range(2, len(tables) + 1):
        table, previous = tables[k - 1], tables[k - 2]
        groups, firsts = _context_groups(table, k)
        G = firsts.size
        prob = np.where(table.ngrams[:, -1] != BOS_ID, 10.0**table.log10_prob, 0.0)
        suffixes = _keys(table.ngrams[:, 1:], table.bits)
        suffix_index = _lookup(previous.keys, suffixes)
        lower = np.where(
            table.ngrams[:, -1] != BOS_ID,
            10.0 ** previous.log10_prob[suffix_index],
            0.0,
        )
        numerator = 1.0 - np.bincount(groups, weights=prob, minlength=G)
        denominator = 1.0 - np.bincount(groups, weights=lower, minlength=G)
        # Continuations covering the whole lower-order distribution leave nothing to
        # redistribute; a weight of one (log 0) keeps the model finite there.
        safe = (numerator > 0) & (denominator > 1e-12)
        backoff = np.where(safe, numerator / np.where(safe, denominator, 1.0), 1.0)
        contexts = _keys(table.ngrams[firsts, : k - 1], table.bits)
        context_index = _lookup(previous.keys, contexts)
        previous.log10_backoff[context_index] = np.log10(backoff)
        previous.is_context[context_index] = True


# --- ARPA output ----------------------------------------------------------------------
def arpa_sections(model: NgramModel) -> Iterator[str]:
    """The ARPA text of ``model`` in pieces (header, then one block per order).

    Values keep nine significant digits (``%.9g``): finer than KenLM's float32.
    """
    words = np.asarray(model.vocabulary, dtype=object)
    header = ["\\data\\"]
    header += [f"ngram {k}={count}" for k, count in enumerate(model.counts(), start=1)]
    yield "\n".join(header) + "\n"
    for k, table in enumerate(model.orders, start=1):
        texts = [" ".join(row) for row in words[table.ngrams].tolist()]
        lines = [
            f"{prob:.9g}\t{text}\t{backoff:.9g}"
            if is_context
            else f"{prob:.9g}\t{text}"
            for text, prob, backoff, is_context in zip(
                texts,
                table.log10_prob.tolist(),
                table.log10_backoff.tolist(),
                table.is_context.tolist(),
                strict=True,
            )
        ]
        yield f"\n\\{k}-grams:\n" + "\n".join(lines) + "\n"
    yield "\n\\end\\\n"


def write_arpa(model: NgramModel, path: str | os.PathLike) -> Path:
    """Write ``model`` as an ARPA file, atomically (temporary file + rename).

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)

    def write(handle) -> None:
        text = io.TextIOWrapper(handle, encoding="utf-8", newline="\n")
        for section in arpa_sections(model):
            text.write(section)
        text.flush()
        text.detach()

    write_atomically(path, write)
    return path


# --- ARPA evaluation ------------------------------------------------------------------
class ArpaModel:
    """An ARPA model held in dictionaries, evaluated with backoff (the test oracle).

    Parameters
    ----------
    log10_probs : list of dict
        Per order, n-gram tuple -> log10 probability.
    log10_backoffs : list of dict
        Per order, n-gram tuple -> log10 backoff (absent means 0).
    """

    def __init__(self, log10_probs: list[dict], log10_backoffs: list[dict]):
        self.log10_probs = log10_probs
        self.log10_backoffs = log10_backoffs

    @property
    def order(self) -> int:
        return len(self.log10_probs)

    @property
    def words(self) -> list[str]:
        """Every unigram, ``<s>`` included."""
        return [ngram[0] for ngram in self.log10_probs[0]]

    @classmethod
    def read(cls, path: str | os.PathLike) -> ArpaModel:
        """Parse an ARPA file.

        Raises
        ------
        ScorerError
            Naming the file and line of a malformed entry or a count mismatch.
        """
        path = Path(path)
        counts: dict[int, int] = {}
        probs: list[dict] = []
        backoffs: list[dict] = []
        current = 0
        with _open_text(path) as text:
            for line_number, line in enumerate(text, start=1):
                line = line.strip()
                if not line or line == "\\data\\":
                    continue
                if line.startswith("ngram "):
                    k, _, n = line[6:].partition("=")
                    counts[int(k)] = int(n)
                elif line == "\\end\\":
                    break
                elif line.startswith("\\") and line.endswith("-grams:"):
                    current = int(line[1:].split("-")[0])
                    probs.append({})
                    backoffs.append({})
                    if current != len(probs):
                        raise ScorerError(
                            f"{path}:{line_number}: sections out of order"
                        )
                else:
                    fields = line.split()
                    if current == 0 or len(fields) not in (current + 1, current + 2):
                        raise ScorerError(
                            f"{path}:{line_number}: malformed line {line!r}"
                        )
                    ngram = tuple(fields[1 : current + 1])
                    probs[-1][ngram] = float(fields[0])
                    if len(fields) == current + 2:
                        backoffs[-1][ngram] = float(fields[-1])
        for k, table in enumerate(probs, start=1):
            if counts.get(k) != len(table):
                raise ScorerError(
                    f"{path}: header says {counts.get(k)} {k}-grams, found {len(table)}"
                )
        return cls(probs, backoffs)

    @classmethod
    def from_model(cls, model: NgramModel) -> ArpaModel:
        """The dictionaries of a built model (without going through a file)."""
        words = model.vocabulary
        probs, backoffs = [], []
        for table in model.orders:
            grams = [tuple(words[i] for i in row) for row in table.ngrams.tolist()]
            probs.append(dict(zip(grams, table.log10_prob.tolist(), strict=True)))
            backoffs.append(
                {
                    g: b
                    for g, b, c in zip(
                        grams,
                        table.log10_backoff.tolist(),
                        table.is_context,
                        strict=True,
                    )
                    if c
                }
            )
        return cls(probs, backoffs)

    def log10_prob(self, word: str, context: Sequence[str] = ()) -> float:
        """log10 P(word | context) with backoff; unknown words score as ``<unk>``."""
        if (word,) not in self.log10_probs[0]:
            word = UNK
        context = tuple(c if (c,) in self.log10_probs[0] else UNK for c in context)
        context = context[max(0, len(context) - (self.order - 1)) :]
        backoff = 0.0
        for start in range(len(context) + 1):
            history = context[start:]
            ngram = (*history, word)
            found = self.log10_probs[len(ngram) - 1].get(ngram)
            if found is not None:
                return backoff + found
            if history:
                backoff += self.log10_backoffs[len(history) - 1].get(history, 0.0)
        raise ScorerError(f"{word!r} is not even a unigram (no <unk> in the model)")

    def score(self, sentence: str, bos: bool = True, eos: bool = True) -> float:
        """log10 probability of a sentence, like ``kenlm.Model.score``."""
        words = sentence.split()
        context: list[str] = [BOS] if bos else []
        total = 0.0
        for word in words + ([EOS] if eos else []):
            total += self.log10_prob(word, context)
            context.append(word)
        return total


def build_arpa_file(
    paths: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    order: int = C.LM_ORDER,
    *,
    prune: Sequence[int] | None = None,
    vocab_size: int | None = None,
    alphabet: Alphabet | None = None,
    progress: bool = False,
) -> NgramModel:
    """Build a model from text files (plain or gzip); write it as ARPA to ``output``."""
    model = build_arpa(
        read_text_lines(paths, progress=progress),
        order,
        prune=prune,
        vocab_size=vocab_size,
        alphabet=alphabet,
    )
    write_arpa(model, output)
    return model


def perplexity(model: ArpaModel, sentences: Iterable[str]) -> float:
    """Per-token perplexity (``</s>`` counted) of already-normalised sentences."""
    total, tokens = 0.0, 0
    for sentence in sentences:
        total += model.score(sentence)
        tokens += len(sentence.split()) + 1
    if tokens == 0:
        raise DataError("no sentence to compute a perplexity on")
    return math.pow(10.0, -total / tokens)
