"""Linear interpolation of ARPA models (npspeech.lm.interpolate) against a dictionary
oracle, KenLM, and a brute-force search of the weights."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from npspeech.errors import ConfigError
from npspeech.lm.arpa import Lookup, read_arpa
from npspeech.lm.build import ArpaModel, write_arpa
from npspeech.lm.evaluate import evaluate
from npspeech.lm.interpolate import (
    dev_probabilities,
    em_weights,
    interpolate,
    mixture_perplexity,
    tune_weights,
)

DATA = Path(__file__).parent / "data"
PETS, WEATHER = DATA / "mix_pets.arpa", DATA / "mix_weather.arpa"  # 3-gram, 2-gram
DEV = [
    s.split()
    for s in (
        "the cat is on the hill",
        "the sun is on the mat",
        "a dog and the rain",
        "the wind is cold and the dog sat",
    )
]


def _probability(oracle: ArpaModel, word: str, history: tuple) -> float:
    """P_i(word | history) as the mixture defines it: 0 outside the vocabulary."""
    if (word,) not in oracle.log10_probs[0]:
        return 0.0
    return 10.0 ** oracle.log10_prob(word, history)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    weights = (0.3, 0.7)
    model = interpolate([read_arpa(PETS), read_arpa(WEATHER)], weights)
    path = tmp_path_factory.mktemp("mix") / "mixed.arpa"
    write_arpa(model, path)
    return path, weights


def _histories(oracle: ArpaModel) -> list[tuple]:
    """Every listed history of order 1 and 2, the empty one, and unlisted ones."""
    histories = [()]
    for k in (1, 2):
        histories += [g for g in oracle.log10_backoffs[k - 1]]
    return histories + [("hot", "cat"), ("zebra",), ("mat", "rain")]


def test_mixture_is_the_weighted_sum_and_normalises(mixed):
    path, (w_pets, w_weather) = mixed
    pets, weather, mix = (
        ArpaModel.read(PETS),
        ArpaModel.read(WEATHER),
        ArpaModel.read(path),
    )
    vocabulary = [w for w in mix.words if w != "<s>"]
    assert set(vocabulary) == (set(pets.words) | set(weather.words)) - {"<s>"}
    backed_off = 0
    for history in _histories(mix):
        context = history[-2:]
        total = unlisted_mixture = unlisted_exact = 0.0
        for word in vocabulary:
            got = 10.0 ** mix.log10_prob(word, history)
            exact = w_pets * _probability(
                pets, word, history
            ) + w_weather * _probability(weather, word, history)
            total += got
            ngram = (*context, word)
            if ngram in mix.log10_probs[len(ngram) - 1]:
                assert got == pytest.approx(exact, rel=1e-7), (history, word)
                # Listed here but not in one component: that one backed off.
                for component in (pets, weather):
                    k = min(len(ngram), component.order)
                    if (word,) in component.log10_probs[0] and (
                        ngram[-k:] not in component.log10_probs[k - 1]
                    ):
                        backed_off += 1
            else:
                unlisted_mixture += got
                unlisted_exact += exact
        assert total == pytest.approx(1.0, abs=1e-7), history
        # Unlisted words share exactly the mass the true mixture gives them.
        assert unlisted_mixture == pytest.approx(unlisted_exact, abs=1e-7), history
    assert backed_off > 20  # the check above covered backed-off components


def test_mixture_loads_in_kenlm_and_scores_like_the_oracle(mixed):
    kenlm = pytest.importorskip("kenlm")
    path, _ = mixed
    model, oracle = kenlm.Model(str(path)), ArpaModel.read(path)
    assert model.order == 3
    for words in DEV + [["zebra", "on", "the", "mat"]]:
        sentence = " ".join(words)
        assert model.score(sentence) == pytest.approx(oracle.score(sentence), abs=1e-4)


def test_em_weights_beat_either_model_and_match_a_grid_search(tmp_path):
    models = [read_arpa(PETS), read_arpa(WEATHER)]
    tuned = tune_weights(models, DEV)
    assert sum(tuned.weights) == pytest.approx(1.0)
    probabilities = dev_probabilities(models, DEV)  # (T, 2)
    grid = np.linspace(0.0005, 0.9995, 2000)
    perplexities = [
        mixture_perplexity(probabilities, np.array([g, 1 - g])) for g in grid
    ]
    best = int(np.argmin(perplexities))
    assert tuned.weights[0] == pytest.approx(grid[best], abs=1e-3)
    assert tuned.perplexity <= perplexities[best] + 1e-9
    assert tuned.perplexity == pytest.approx(
        mixture_perplexity(probabilities, np.array(tuned.weights))
    )
    # The written mixture beats each model alone on the dev text (OOVs as <unk>).
    path = tmp_path / "tuned.arpa"
    write_arpa(interpolate(models, tuned.weights), path)
    mixture = evaluate(Lookup(read_arpa(path)), DEV)
    for model in models:
        alone = evaluate(Lookup(model), DEV)
        assert mixture.perplexity < alone.perplexity
        assert mixture.oov <= alone.oov


def test_em_on_three_models_matches_a_simplex_grid(rng):
    probabilities = rng.uniform(0.001, 1.0, size=(200, 3)) ** 3  # (T, M)
    weights, iterations = em_weights(probabilities)
    assert 1 < iterations < 1000
    steps = np.linspace(0.0, 1.0, 201)
    best = min(
        (mixture_perplexity(probabilities, np.array([a, b, 1 - a - b])), a, b)
        for a in steps
        for b in steps
        if a + b <= 1.0 and min(a, b, 1 - a - b) > 0
    )
    assert mixture_perplexity(probabilities, weights) <= best[0] + 1e-12
    assert weights[:2] == pytest.approx(best[1:], abs=0.01)


def test_a_three_model_mixture_normalises(tmp_path):
    other = tmp_path / "other.arpa"
    from npspeech.lm.build import build_arpa

    write_arpa(build_arpa(["a bird sat on the hill", "the bird is red"], 2), other)
    models = [read_arpa(p) for p in (PETS, WEATHER, other)]
    path = tmp_path / "three.arpa"
    write_arpa(interpolate(models, (0.5, 0.25, 0.25)), path)
    oracle = ArpaModel.read(path)
    vocabulary = [w for w in oracle.words if w != "<s>"]
    for history in [(), ("the",), ("bird", "is"), ("<s>", "the")]:
        total = sum(10.0 ** oracle.log10_prob(w, history) for w in vocabulary)
        assert math.isclose(total, 1.0, abs_tol=1e-7)


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ((0.5,), "2 models need 2 weights"),
        ((0.5, 0.6), "sum to 1"),
        ((1.0, 0.0), "positive"),
    ],
)
def test_bad_weights_are_refused(weights, message):
    models = [read_arpa(PETS), read_arpa(WEATHER)]
    with pytest.raises(ConfigError, match=message):
        interpolate(models, weights)


def test_one_model_is_not_a_mixture():
    with pytest.raises(ConfigError, match="at least two"):
        tune_weights([read_arpa(PETS)], DEV)


def test_adapting_real_general_text_to_kathleen_arctic(data_dir, tmp_path):
    """Common Voice sentences (general) + kathleen_arctic train transcripts (in-domain),
    mixed with weights tuned on dev: on the test transcripts the mixture beats both
    parts and has the general model's coverage. Test sentences reach no model."""
    from npspeech.lm.build import build_arpa_file
    from npspeech.lm.evaluate import read_sentences

    kathleen = data_dir / "kathleen_arctic"
    general = build_arpa_file(
        [data_dir / "lm_text" / "commonvoice.txt.gz"], tmp_path / "general.arpa", 3
    )
    in_domain = build_arpa_file([kathleen / "train.csv"], tmp_path / "train.arpa", 3)
    dev = read_sentences([kathleen / "dev.csv"])
    test = read_sentences([kathleen / "test.csv"])
    tuned = tune_weights([general, in_domain], dev)
    assert 0.05 < tuned.weights[1] < 0.95
    mixed = interpolate([general, in_domain], tuned.weights)
    result = evaluate(Lookup(mixed), test)
    for part in (general, in_domain):
        alone = evaluate(Lookup(part), test)
        assert result.perplexity < alone.perplexity
        assert result.oov <= alone.oov
