"""Linear interpolation of n-gram models into one ARPA model, weights tuned by EM.

The mixture of models ``P_1 .. P_M`` with weights ``w_i`` (positive, summing to one) is

    P_mix(w | h) = sum_i w_i P_i(w | h),

each ``P_i`` evaluated with its own backoff. Like SRILM's ``ngram -mix-lm`` (static
interpolation) and KenLM's ``interpolate``, the mixture is written as one backoff
model:

1. Vocabulary: the union of the models' words. A word outside model i's vocabulary
   has ``P_i(w | h) = 0`` (model i spreads that mass over its ``<unk>``), so the
   mixture still sums to one; history words outside model i are ``<unk>`` to it.
2. n-grams: the union of every model's n-grams, closed under prefixes and suffixes
   (so each history holds its backoff and each lower-order term is listed).
3. Every listed n-gram gets the exact mixture ``sum_i w_i P_i(w | h)``.
4. Each history's backoff is recomputed so its distribution sums to one:
   ``bow(h) = (1 - sum_{w in S(h)} P_mix(w | h)) / (1 - sum_{w in S(h)} P_mix(w | h'))``
   over the listed continuations ``S(h)``.

Exactness: the written model equals ``sum_i w_i P_i(w | h)`` for every (history, word)
listed in any input model, whichever models must back off to produce it. A word that
no model lists after ``h`` gets ``bow(h) P_mix(w | h')``, which matches the true
mixture ``sum_i w_i bow_i(h) P_i(w | h')`` only where the models' backoff weights agree;
the total mass of these words is exact, only its spread over them follows the mixed
lower order. This is the same approximation SRILM and KenLM make, and the price of a
model that stays a single ARPA file.

Weights (:func:`tune_weights`) maximise the likelihood of dev text under the exact
(dynamic) mixture by expectation-maximisation, as SRILM's ``compute-best-mix`` does:
``w_i <- mean_t w_i P_i(t) / sum_j w_j P_j(t)``. The log-likelihood is concave in the
weights, so EM converges to the global optimum. Tokens outside every model's
vocabulary are left out (all models would score them only as ``<unk>``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, DataError
from .arpa import PROGRESS_MIN_NGRAMS, Lookup, history_ids, sentence_tokens, union_rows
from .build import (
    ARPA_NEVER,
    BOS_ID,
    UNK,
    UNK_ID,
    NgramModel,
    OrderTable,
    _renormalised_backoffs,
)

EM_MAX_ITERATIONS = 1000
EM_TOLERANCE = 1e-9  # stop when no weight moves more than this in one iteration


@dataclass(frozen=True)
class MixWeights:
    """Weights found by :func:`tune_weights`.

    Attributes
    ----------
    weights : tuple of float
        One per model, positive, summing to one.
    perplexity : float
        Dev perplexity of the exact mixture with these weights (tokens in some
        model's vocabulary).
    tokens : int
        Dev tokens used.
    iterations : int
        EM iterations run.
    """

    weights: tuple[float, ...]
    perplexity: float
    tokens: int
    iterations: int


def check_weights(weights: Sequence[float], n_models: int) -> np.ndarray:
    """Weights as float64 (M,), checked: one per model, positive, summing to one."""
    values = np.asarray(list(weights), dtype=np.float64)
    if values.shape != (n_models,):
        raise ConfigError(
            f"{n_models} models need {n_models} weights, got {len(values)}"
        )
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ConfigError(f"weights must be positive numbers, got {values.tolist()}")
    if abs(values.sum() - 1.0) > 1e-3:
        raise ConfigError(f"weights must sum to 1, got {values.tolist()}")
    return values / values.sum()


def union_vocabulary(models: Sequence[NgramModel]) -> list[str]:
    """``<unk> <s> </s>``, then each model's other words in order, first seen first."""
    vocabulary = list(models[0].vocabulary[:3])
    seen = set(vocabulary)
    for model in models:
        for word in model.vocabulary:
            if word not in seen:
                seen.add(word)
                vocabulary.append(word)
    return vocabulary


def _id_maps(models, vocabulary) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per model: its ids -> union ids (V_i,), union ids -> its ids or -1 (V,)."""
    index = {word: i for i, word in enumerate(vocabulary)}
    to_union, from_union = [], []
    for model in models:
        forward = np.array([index[w] for w in model.vocabulary], dtype=np.int32)
        backward = np.full(len(vocabulary), -1, dtype=np.int32)
        backward[forward] = np.arange(forward.size, dtype=np.int32)
        to_union.append(forward)
        from_union.append(backward)
    return to_union, from_union


def _closed_ngrams(models, to_union, order: int, bits: int) -> list[np.ndarray]:
    """Union of the models' n-grams per order (union ids), closed under prefixes and
    suffixes, each (M_k, k) int32 sorted."""
    blocks: list[list[np.ndarray]] = [[] for _ in range(order)]
    for model, mapping in zip(models, to_union, strict=True):
        for k, table in enumerate(model.orders, start=1):
            blocks[k - 1].append(mapping[table.ngrams])
    rows: list[np.ndarray] = [None] * order  # type: ignore[list-item]
    for k in range(order, 0, -1):  # highest first: its prefixes/suffixes go one down
        rows[k - 1] = union_rows(blocks[k - 1], bits)
        if k > 1:
            blocks[k - 2] += [rows[k - 1][:, :-1], rows[k - 1][:, 1:]]
    return rows


def component_log10_probs(
    lookup: Lookup, from_union: np.ndarray, rows: np.ndarray
) -> np.ndarray:
    """log10 P_i(last word | the others) of union-id n-grams ``rows`` (Q, k) under one
    model; -inf where the word is outside its vocabulary (probability 0 in the
    mixture)."""
    words = from_union[rows[:, -1]]
    contexts = from_union[rows[:, :-1]]  # (Q, k - 1); -1 outside the vocabulary
    contexts = np.where(contexts < 0, UNK_ID, contexts).astype(np.int32)
    known = words >= 0
    result = np.full(rows.shape[0], -np.inf)
    result[known] = lookup.log10_probs(contexts[known], words[known])
    return result


def interpolate(
    models: Sequence[NgramModel], weights: Sequence[float], progress: bool = False
) -> NgramModel:
    """The linear interpolation of ``models`` as one backoff model (module doc).

    Parameters
    ----------
    models
        Two or more models (any orders; the mixture has the highest).
    weights
        One per model, positive, summing to one.
    progress
        Show a progress bar over the orders on stderr.

    Returns
    -------
    NgramModel
        Sorted tables with probabilities and recomputed backoffs; counts are zero.
    """
    if len(models) < 2:
        raise ConfigError("interpolation needs at least two models")
    weights = check_weights(weights, len(models))
    vocabulary = union_vocabulary(models)
    if vocabulary[:3] != ["<unk>", "<s>", "</s>"] or any(
        m.vocabulary[UNK_ID] != UNK for m in models
    ):
        raise DataError("models must list <unk>, <s>, </s> first (use read_arpa)")
    order = max(model.order for model in models)
    bits = max(1, (len(vocabulary) - 1).bit_length())
    to_union, from_union = _id_maps(models, vocabulary)
    rows = _closed_ngrams(models, to_union, order, bits)
    lookups = [Lookup(model) for model in models]
    large = sum(r.shape[0] for r in rows) >= PROGRESS_MIN_NGRAMS
    bar = _bar(progress and large, order, "mixing orders")
    tables = []
    for ngrams in rows:
        mixture = np.zeros(ngrams.shape[0])
        for lookup, backward, weight in zip(lookups, from_union, weights, strict=True):
            mixture += weight * 10.0 ** component_log10_probs(lookup, backward, ngrams)
        never = ngrams[:, -1] == BOS_ID  # <s> is never predicted
        with np.errstate(divide="ignore"):
            log10_prob = np.where(never, ARPA_NEVER, np.log10(mixture))
        if not np.all(np.isfinite(log10_prob)):
            raise DataError("an n-gram has probability zero in every model")
        M = ngrams.shape[0]
        table = OrderTable(ngrams, np.zeros(M, np.int64), np.zeros(M, np.int64), bits)
        table.log10_prob = log10_prob
        table.log10_backoff = np.zeros(M)
        table.is_context = np.zeros(M, dtype=bool)
        tables.append(table)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    _renormalised_backoffs(tables)
    return NgramModel(vocabulary, tables, [], [], 0, 0)


def _bar(progress: bool, total: int, desc: str):
    if not progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="order")


def dev_probabilities(
    models: Sequence[NgramModel], word_lists: Sequence[Sequence[str]]
) -> np.ndarray:
    """Each model's probability (not log) of each dev token, (T, M) float64.

    Tokens outside every model's vocabulary are dropped; a token outside one model's
    vocabulary has probability 0 under it (as in the mixture).
    """
    vocabulary = union_vocabulary(models)
    context = max(1, max(m.order for m in models) - 1)
    tokens, history, _ = sentence_tokens(word_lists, context)
    columns = []
    index = {word: i for i, word in enumerate(vocabulary)}
    union_ids = np.fromiter(
        (index.get(t, -1) for t in tokens), dtype=np.int64, count=len(tokens)
    )
    in_union = union_ids >= 0
    for model in models:
        lookup = Lookup(model)
        ids, known = lookup.word_ids(tokens)
        log10_probs = lookup.log10_probs(history_ids(ids, history), ids)
        columns.append(np.where(known, 10.0**log10_probs, 0.0))
    probabilities = np.stack(columns, axis=1)[in_union]  # (T, M)
    if probabilities.shape[0] == 0:
        raise DataError("the dev text has no token in any model's vocabulary")
    return probabilities


def em_weights(
    probabilities: np.ndarray,
    max_iterations: int = EM_MAX_ITERATIONS,
    tolerance: float = EM_TOLERANCE,
) -> tuple[np.ndarray, int]:
    """Mixture weights maximising ``sum_t log sum_i w_i P[t, i]`` (EM; NumPy reference).

    Parameters
    ----------
    probabilities : ndarray of float64, shape (T, M)
        Each model's probability of each token; every row needs a positive entry.

    Returns
    -------
    weights : ndarray of float64, shape (M,)
    iterations : int
    """
    T, M = probabilities.shape
    if np.any(probabilities.max(axis=1) <= 0):
        raise DataError("a dev token has probability zero under every model")
    weights = np.full(M, 1.0 / M)
    for iteration in range(1, max_iterations + 1):
        joint = probabilities * weights  # (T, M)
        posterior = joint / joint.sum(axis=1, keepdims=True)  # (T, M)
        updated = posterior.mean(axis=0)
        moved = float(np.abs(updated - weights).max())
        weights = updated
        if moved < tolerance:
            return weights, iteration
    return weights, max_iterations


def mixture_perplexity(probabilities: np.ndarray, weights: np.ndarray) -> float:
    """Perplexity of the exact mixture on the tokens of ``probabilities`` (T, M)."""
    with np.errstate(divide="ignore"):
        log_likelihood = np.log(probabilities @ weights).sum()
    return math.exp(-log_likelihood / probabilities.shape[0])


def tune_weights(
    models: Sequence[NgramModel], word_lists: Sequence[Sequence[str]]
) -> MixWeights:
    """EM weights of ``models`` for normalised dev sentences (module doc)."""
    if len(models) < 2:
        raise ConfigError("interpolation needs at least two models")
    word_lists = [list(words) for words in word_lists]
    if not word_lists:
        raise DataError("no dev sentence to tune the weights on")
    probabilities = dev_probabilities(models, word_lists)
    weights, iterations = em_weights(probabilities)
    return MixWeights(
        weights=tuple(float(w) for w in weights),
        perplexity=mixture_perplexity(probabilities, weights),
        tokens=int(probabilities.shape[0]),
        iterations=iterations,
    )
