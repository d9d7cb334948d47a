"""Relative-entropy pruning (npspeech.lm.prune): the criterion against the exact
relative entropy, budgets, normalisation, monotonicity, KenLM loading."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from npspeech.errors import ConfigError
from npspeech.lm.arpa import read_arpa
from npspeech.lm.build import ArpaModel, build_arpa, write_arpa
from npspeech.lm.prune import entropy_criteria, prune

DATA = Path(__file__).parent / "data"
PETS = DATA / "mix_pets.arpa"  # a 3-gram model written by npspeech.lm.build


@pytest.fixture(scope="module")
def model():
    return read_arpa(PETS)


def _vocabulary(oracle: ArpaModel) -> list[str]:
    return [w for w in oracle.words if w != "<s>"]


def _history_probability(oracle: ArpaModel, history: tuple) -> float:
    log10 = 0.0
    for j, word in enumerate(history):
        if j == 0 and word == "<s>":
            continue
        log10 += oracle.log10_prob(word, history[:j])
    return 10.0**log10


def test_criterion_is_the_exact_relative_entropy_of_removing_one_ngram(model):
    """D(h w) = P(h) sum_x p(x|h) ln(p(x|h) / p'(x|h)), p' without h w and with the
    backoff of h renormalised, summed over the whole vocabulary."""
    oracle = ArpaModel.read(PETS)
    vocabulary = _vocabulary(oracle)
    criteria = entropy_criteria(model)
    table = model.orders[2]
    checked = 0
    for row in range(0, table.ngrams.shape[0], 3):
        ngram = tuple(model.vocabulary[i] for i in table.ngrams[row])
        history, word = ngram[:2], ngram[2]
        before = {x: 10.0 ** oracle.log10_prob(x, history) for x in vocabulary}
        listed = [g[2] for g in oracle.log10_probs[2] if g[:2] == history]
        rest = [x for x in listed if x != word]
        numerator = 1.0 - sum(before[x] for x in rest)
        denominator = 1.0 - sum(10.0 ** oracle.log10_prob(x, history[1:]) for x in rest)
        pruned = ArpaModel(
            [dict(t) for t in oracle.log10_probs],
            [dict(t) for t in oracle.log10_backoffs],
        )
        del pruned.log10_probs[2][ngram]
        pruned.log10_backoffs[1][history] = math.log10(numerator / denominator)
        exact = _history_probability(oracle, history) * sum(
            p * math.log(p / 10.0 ** pruned.log10_prob(x, history))
            for x, p in before.items()
        )
        assert criteria[2][row] == pytest.approx(exact, rel=1e-6, abs=1e-12), ngram
        checked += 1
    assert checked >= 10


def _sizes(model, thresholds, tmp_path):
    sizes = []
    for index, threshold in enumerate(thresholds):
        pruned, result = prune(model, threshold=threshold)
        path = tmp_path / f"p{index}.arpa"
        write_arpa(pruned, path)
        assert path.stat().st_size <= result.max_bytes
        sizes.append((path.stat().st_size, sum(pruned.counts()), pruned))
    return sizes


def test_size_falls_monotonically_and_kept_sets_are_nested(model, tmp_path):
    thresholds = [0.0, 1e-4, 5e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 1.0]
    sizes = _sizes(model, thresholds, tmp_path)
    assert sizes[0][1] == sum(model.counts())  # 0 keeps everything
    assert sizes[-1][2].counts()[1:] == [0, 0] or sizes[-1][1] < sizes[0][1]
    for (bytes_a, count_a, a), (bytes_b, count_b, b) in zip(
        sizes, sizes[1:], strict=False
    ):
        assert bytes_b <= bytes_a and count_b <= count_a
        for table_a, table_b in zip(a.orders, b.orders, strict=True):
            kept_a = {tuple(r) for r in table_a.ngrams.tolist()}
            assert {tuple(r) for r in table_b.ngrams.tolist()} <= kept_a
    assert sizes[-1][1] < sizes[0][1] / 2


@pytest.mark.parametrize("budget", [700, 1000, 1500, 2000])
def test_byte_budget_is_respected_and_the_model_normalises(model, budget, tmp_path):
    pruned, result = prune(model, max_bytes=budget)
    path = tmp_path / "pruned.arpa"
    write_arpa(pruned, path)
    assert path.stat().st_size <= budget
    # The largest model under the budget: the next smaller threshold would not fit.
    looser = result.threshold * (1 - 1e-9)
    if looser > 0:
        _, next_result = prune(model, threshold=looser)
        assert (
            next_result.max_bytes > budget
            or next_result.counts_after == result.counts_after
        )
    oracle, full = ArpaModel.read(path), ArpaModel.read(PETS)
    vocabulary = _vocabulary(oracle)
    for history in [
        (),
        ("the",),
        ("<s>", "the"),
        ("the", "cat"),
        ("on", "the"),
        ("a",),
    ]:
        total = sum(10.0 ** oracle.log10_prob(w, history) for w in vocabulary)
        assert total == pytest.approx(1.0, abs=1e-7), history
    # Kept n-grams keep their probabilities.
    for k, table in enumerate(oracle.log10_probs):
        for ngram, log10 in table.items():
            assert log10 == pytest.approx(full.log10_probs[k][ngram], abs=1e-8)


def test_ngram_budget_and_kenlm_reads_the_result(model, tmp_path):
    for budget in (15, 30, 50, 70):
        pruned, _ = prune(model, max_ngrams=budget)
        assert sum(pruned.counts()) <= budget
    kenlm = pytest.importorskip("kenlm")
    pruned, _ = prune(model, max_ngrams=40)
    path = tmp_path / "pruned.arpa"
    write_arpa(pruned, path)
    oracle, loaded = ArpaModel.read(path), kenlm.Model(str(path))
    for sentence in ("the cat sat on the mat", "a dog saw the zebra", "on on the"):
        assert loaded.score(sentence) == pytest.approx(oracle.score(sentence), abs=1e-4)


def _relative_entropy(full: ArpaModel, pruned: ArpaModel) -> float:
    """sum_h P(h) sum_w p(w|h) ln(p(w|h) / p'(w|h)) over every two-word history."""
    vocabulary = _vocabulary(full)
    histories = [
        (a, b) for a in ["<s>", *vocabulary] for b in vocabulary if b != "</s>"
    ]
    total = 0.0
    for history in histories:
        weight = _history_probability(full, history)
        for word in vocabulary:
            p = 10.0 ** full.log10_prob(word, history)
            total += weight * p * math.log(p / 10.0 ** pruned.log10_prob(word, history))
    return total


def test_entropy_pruning_stays_closer_to_the_model_than_count_pruning(tmp_path, rng):
    """What the criterion minimises: at no larger size, the relative entropy to the
    unpruned model is below that of dropping n-grams by count (lmplz --prune)."""
    words = np.array("the a cat dog sat ran on under mat log".split())
    # A Markov source with peaked transitions.
    transitions = rng.dirichlet(np.full(words.size, 0.3), size=words.size)
    sentences = []
    for _ in range(400):
        state = rng.integers(words.size)
        sentence = [state]
        for _ in range(rng.integers(2, 9)):
            state = rng.choice(words.size, p=transitions[state])
            sentence.append(state)
        sentences.append(" ".join(words[sentence]))
    paths = {name: tmp_path / f"{name}.arpa" for name in ("full", "count", "entropy")}
    full = build_arpa(sentences, 3)
    by_count = build_arpa(sentences, 3, prune=[0, 1, 2])
    pruned, _ = prune(full, max_ngrams=sum(by_count.counts()))
    assert sum(pruned.counts()) <= sum(by_count.counts()) < sum(full.counts())
    for name, built in (("full", full), ("count", by_count), ("entropy", pruned)):
        write_arpa(built, paths[name])
    oracle = ArpaModel.read(paths["full"])
    entropy = _relative_entropy(oracle, ArpaModel.read(paths["entropy"]))
    count = _relative_entropy(oracle, ArpaModel.read(paths["count"]))
    assert 0 < entropy < count


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one"),
        ({"threshold": 0.1, "max_ngrams": 10}, "exactly one"),
        ({"threshold": -1.0}, "threshold"),
        ({"max_bytes": 0}, "max_bytes"),
        ({"max_bytes": 100}, "below the unigrams alone"),
        ({"max_ngrams": 3}, "below the unigrams alone"),
    ],
)
def test_bad_budgets_are_refused(model, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        prune(model, **kwargs)
