"""Relative-entropy pruning of a backoff n-gram model to a size budget (Stolcke 1998).

Stolcke, "Entropy-based pruning of backoff language models" (1998), as SRILM's
``ngram -prune``: removing the n-gram ``h w`` (order >= 2) makes ``P(w | h)`` back off
to ``bow'(h) P(w | h')`` and changes the backoff of the words already backed off from
``bow(h)`` to ``bow'(h)``, where, with ``S(h)`` the listed continuations of ``h``,

    bow'(h) = (1 - sum_{S(h)} p(.|h) + p(w|h)) / (1 - sum_{S(h)} P(.|h') + P(w|h')).

The relative entropy between the model and the pruned one is then

    D(h w) = -P(h) [ p(w|h) (ln bow'(h) + ln P(w|h') - ln p(w|h))
                     + (1 - sum_{S(h)} p(.|h)) (ln bow'(h) - ln bow(h)) ]

with ``P(h)`` the model's probability of the history (a history opening with ``<s>``
starts with probability one). Every n-gram is scored against the unpruned model (the
criterion's usual approximation); those with ``D < threshold`` go, except the prefixes
and suffixes of what stays (each history keeps its backoff entry and each backoff
reaches a listed lower order, as KenLM expects). Unigrams always stay. The kept n-grams
keep their probabilities and every backoff is recomputed so each history's
distribution sums to one again.

Larger thresholds remove supersets (the kept sets are nested), so the size falls
monotonically and :func:`prune` finds the smallest threshold that fits a budget in
bytes of ARPA text or in n-grams by bisection over the criterion values.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from .arpa import PROGRESS_MIN_NGRAMS, Lookup
from .build import (
    BOS_ID,
    NgramModel,
    OrderTable,
    _context_groups,
    _renormalised_backoffs,
    _select,
)

BOW_TEXT_BYTES = 16  # tab + the longest "%.9g" of a log10 backoff ("-1.23456789e-05")
# What an npspeech scorer package adds besides its word list: binary header, the other
# metadata keys (order, alpha, beta, SHA-256, version), alignment: about 250-300 bytes.
PACKAGE_ALLOWANCE = 1024


def package_overhead(vocabulary) -> int:
    """Upper bound (bytes) of what ``npspeech lm package`` adds to an ARPA file.

    The package stores the sorted word list as JSON next to a small header; pruning
    keeps every unigram, so this is fixed for a model and its pruned versions.
    """
    words = json.dumps(sorted(set(vocabulary)), ensure_ascii=False)
    return len(words.encode("utf-8")) + PACKAGE_ALLOWANCE


@dataclass(frozen=True)
class PruneResult:
    """What :func:`prune` did.

    Attributes
    ----------
    threshold : float
        Relative-entropy threshold applied (nats); 0 keeps everything.
    counts_before, counts_after : tuple of int
        n-grams per order, unigrams first.
    max_bytes : int
        Upper bound of the pruned model's ARPA size in bytes (as ``write_arpa``
        writes it); the written file is at most this large.
    """

    threshold: float
    counts_before: tuple[int, ...]
    counts_after: tuple[int, ...]
    max_bytes: int


def history_log10_probs(lookup: Lookup, histories: np.ndarray) -> np.ndarray:
    """log10 P(h) of histories (G, j) int32 under the model, chaining conditionals.

    A history opening with ``<s>`` starts with probability one (``<s>`` is given).
    """
    G, J = histories.shape
    total = np.zeros(G)
    for j in range(J):
        words = histories[:, j]
        log10_probs = lookup.log10_probs(histories[:, :j], words)
        if j == 0:
            log10_probs = np.where(words == BOS_ID, 0.0, log10_probs)
        total += log10_probs
    return total


def entropy_criteria(model: NgramModel, lookup: Lookup | None = None) -> list:
    """Stolcke's D (nats) of every n-gram, per order; unigrams get +inf.

    Returns
    -------
    list of ndarray of float64, shape (M_k,)
    """
    lookup = lookup or Lookup(model)
    criteria = [np.full(model.orders[0].ngrams.shape[0], np.inf)]
    for k in range(2, model.order + 1):
        table, lower = model.orders[k - 1], model.orders[k - 2]
        ngrams = table.ngrams  # (M, k)
        groups, firsts = _context_groups(table, k)
        G = firsts.size
        predicted = ngrams[:, -1] != BOS_ID
        p = np.where(predicted, 10.0**table.log10_prob, 0.0)
        q_log10 = lookup.log10_probs(ngrams[:, 1:-1], ngrams[:, -1])
        q = np.where(predicted, 10.0**q_log10, 0.0)
        kept_mass = 1.0 - np.bincount(groups, weights=p, minlength=G)  # (G,)
        lower_mass = 1.0 - np.bincount(groups, weights=q, minlength=G)
        histories = ngrams[firsts, :-1]  # (G, k - 1)
        index, found = lookup.find(histories)
        log10_bow = np.where(found, lower.log10_backoff[index], 0.0)
        history = 10.0 ** history_log10_probs(lookup, histories)  # (G,)
        num = kept_mass[groups] + p
        den = lower_mass[groups] + q
        with np.errstate(divide="ignore", invalid="ignore"):
            ln_new_bow = np.log(np.maximum(num, 1e-300) / np.maximum(den, 1e-300))
            change = p * (
                ln_new_bow
                + np.log(np.maximum(q, 1e-300))
                - np.log(np.maximum(p, 1e-300))
            ) + np.maximum(kept_mass[groups], 0.0) * (
                ln_new_bow - log10_bow[groups] * math.log(10.0)
            )
        criterion = -history[groups] * change
        # <s> targets are never predicted: removing one changes nothing.
        criteria.append(np.where(predicted, criterion, 0.0))
    return criteria


class _Closure:
    """Prefix and suffix positions, to keep what the kept n-grams need."""

    def __init__(self, model: NgramModel, lookup: Lookup):
        self.prefix, self.suffix = [None, None], [None, None]
        for k in range(2, model.order + 1):
            ngrams = model.orders[k - 1].ngrams
            prefix, found_prefix = lookup.find(ngrams[:, :-1])
            suffix, found_suffix = lookup.find(ngrams[:, 1:])
            if not (found_prefix.all() and found_suffix.all()):
                raise ConfigError(
                    f"the model lacks the prefix or suffix of a {k}-gram; pruning "
                    "needs a model whose n-grams' prefixes and suffixes are listed "
                    "(as lmplz and npspeech write them)"
                )
            self.prefix.append(prefix)
            self.suffix.append(suffix)

    def keep(self, criteria: list, threshold: float) -> list:
        # A threshold of 0 keeps everything, rounding-level negative D included.
        keep = [(c >= threshold) | (threshold <= 0) for c in criteria]
        keep[0][:] = True
        for k in range(len(criteria), 1, -1):
            kept = keep[k - 1]
            keep[k - 2][self.prefix[k][kept]] = True
            keep[k - 2][self.suffix[k][kept]] = True
        return keep

    def contexts(self, keep: list) -> list:
        """Which kept n-grams are histories of kept higher-order n-grams."""
        is_context = [np.zeros(mask.shape, dtype=bool) for mask in keep]
        for k in range(2, len(keep) + 1):
            is_context[k - 2][self.prefix[k][keep[k - 1]]] = True
        return is_context


def _line_bytes(model: NgramModel) -> list:
    """Bytes of each n-gram's ARPA line but its backoff: prob, tab, words, newline."""
    word_bytes = np.array(
        [len(w.encode("utf-8")) for w in model.vocabulary], dtype=np.int64
    )
    sizes = []
    for k, table in enumerate(model.orders, start=1):
        prob_bytes = np.char.str_len(np.char.mod("%.9g", table.log10_prob))
        text = word_bytes[table.ngrams].sum(axis=1) + (k - 1)
        sizes.append(prob_bytes.astype(np.int64) + 1 + text + 1)
    return sizes


def _arpa_bytes(line_bytes, keep, is_context) -> int:
    counts = [int(np.count_nonzero(mask)) for mask in keep]
    header = len("\\data\\\n") + sum(
        len(f"ngram {k}={n}\n") for k, n in enumerate(counts, start=1)
    )
    sections = sum(len(f"\n\\{k}-grams:\n") for k in range(1, len(keep) + 1))
    sections += counts.count(0)  # an empty section still ends with a newline
    body = sum(
        int(sizes[mask].sum()) + BOW_TEXT_BYTES * int(np.count_nonzero(context[mask]))
        for sizes, mask, context in zip(line_bytes, keep, is_context, strict=True)
    )
    return header + sections + body + len("\n\\end\\\n")


def prune(
    model: NgramModel,
    *,
    threshold: float | None = None,
    max_bytes: int | None = None,
    max_ngrams: int | None = None,
    progress: bool = False,
) -> tuple[NgramModel, PruneResult]:
    """Prune ``model`` by relative entropy, to a threshold or the largest model that
    fits a budget.

    Parameters
    ----------
    model
        A normalised backoff model whose n-grams' prefixes and suffixes are listed.
    threshold
        Remove n-grams whose relative entropy ``D`` (nats) is below this.
    max_bytes
        Largest ARPA text size (bytes, as :func:`~npspeech.lm.build.write_arpa` writes).
    max_ngrams
        Largest total number of n-grams (all orders).

    Give exactly one of them.
    progress
        Show a progress bar over the search for the threshold (large models only).

    Returns
    -------
    (NgramModel, PruneResult)
        A new model (the input is not changed) and what was done.

    Raises
    ------
    ConfigError
        For a bad or missing budget, one below the unigrams alone, or a model that
        lacks the prefixes/suffixes of its n-grams.
    """
    given = [v is not None for v in (threshold, max_bytes, max_ngrams)]
    if sum(given) != 1:
        raise ConfigError("give exactly one of threshold, max_bytes, max_ngrams")
    if threshold is not None and not (math.isfinite(threshold) and threshold >= 0):
        raise ConfigError(f"threshold must be a number >= 0, got {threshold!r}")
    for name, value in (("max_bytes", max_bytes), ("max_ngrams", max_ngrams)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    lookup = Lookup(model)
    closure = _Closure(model, lookup)
    criteria = entropy_criteria(model, lookup)
    line_bytes = _line_bytes(model)

    def size(keep) -> int:
        if max_ngrams is not None:
            return sum(int(np.count_nonzero(mask)) for mask in keep)
        return _arpa_bytes(line_bytes, keep, closure.contexts(keep))

    if threshold is None:
        budget = max_bytes if max_bytes is not None else max_ngrams
        unit = "bytes" if max_bytes is not None else "n-grams"
        progress = progress and sum(model.counts()) >= PROGRESS_MIN_NGRAMS
        threshold = _smallest_fitting_threshold(
            criteria, closure, size, budget, unit, progress
        )
    keep = closure.keep(criteria, threshold)
    pruned = _pruned_copy(model, keep)
    result = PruneResult(
        threshold=float(threshold),
        counts_before=tuple(model.counts()),
        counts_after=tuple(pruned.counts()),
        max_bytes=_arpa_bytes(line_bytes, keep, closure.contexts(keep)),
    )
    return pruned, result


def _smallest_fitting_threshold(
    criteria, closure, size, budget, unit, progress
) -> float:
    candidates = np.unique(np.concatenate([*criteria[1:], [0.0, np.inf]]))
    candidates = candidates[candidates >= 0]  # (C,) sorted; inf removes every n>=2
    smallest = size(closure.keep(criteria, candidates[-1]))
    if smallest > budget:
        raise ConfigError(
            f"a budget of {budget} {unit} is below the unigrams alone ({smallest})"
        )
    low, high = 0, candidates.size - 1  # size(candidates[high]) fits
    bar = None
    if progress:
        from tqdm import tqdm

        steps = max(1, math.ceil(math.log2(candidates.size)))
        bar = tqdm(total=steps, desc="searching the threshold", unit="step")
    while low < high:
        middle = (low + high) // 2
        if size(closure.keep(criteria, candidates[middle])) <= budget:
            high = middle
        else:
            low = middle + 1
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return float(candidates[high])


def _pruned_copy(model: NgramModel, keep: list) -> NgramModel:
    tables = []
    for table, mask in zip(model.orders, keep, strict=True):
        copy = OrderTable(
            table.ngrams,
            table.raw_counts,
            table.adjusted,
            table.bits,
            table.log10_prob,
            table.log10_backoff.copy(),
            table.is_context.copy(),
        )
        _select(copy, mask)
        tables.append(copy)
    _renormalised_backoffs(tables)
    return NgramModel(
        model.vocabulary,
        tables,
        model.discounts,
        model.fallback,
        model.n_sentences,
        model.n_words,
    )
