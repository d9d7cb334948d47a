"""Alpha/beta search: a synthetic problem with a known optimum, dev-set files."""

from __future__ import annotations

import numpy as np
import pytest

from npspeech.errors import ConfigError, DataError
from npspeech.lm.tune import (
    default_grid,
    load_log_probs,
    save_log_probs,
    tune_alpha_beta,
)

REFERENCES = [
    "the cat sat on the mat",
    "a bird sang in the old tree",
    "the dog ran down the long road",
]
BEST_ALPHA, BEST_BETA = 1.5, 2.5


def _dev_set(rng):
    """Log-probabilities whose frame count identifies the utterance (the fake's key)."""
    return [rng.standard_normal((10 + i, 29)).astype(np.float32) for i in range(3)]


def fake_decode(log_probs, alpha, beta):
    """Wrong words grow with the L1 distance from (BEST_ALPHA, BEST_BETA)."""
    words = REFERENCES[log_probs.shape[0] - 10].split()
    wrong = min(
        len(words), int(round(2 * (abs(alpha - BEST_ALPHA) + abs(beta - BEST_BETA))))
    )
    return " ".join(["x"] * wrong + words[wrong:])


def test_grid_search_finds_the_known_optimum(rng):
    log_probs = _dev_set(rng)
    alphas = default_grid((0.0, 3.0), 7)  # step 0.5: contains 1.5
    betas = default_grid((0.0, 5.0), 11)  # step 0.5: contains 2.5
    result = tune_alpha_beta(log_probs, REFERENCES, fake_decode, alphas, betas)
    assert (result.alpha, result.beta) == (BEST_ALPHA, BEST_BETA)
    assert result.wer == 0.0 and result.cer == 0.0
    assert len(result.table) == 7 * 11
    # The table holds the error rate of every point, as the fake defines it.
    total_words = sum(len(r.split()) for r in REFERENCES)
    for point in result.table:
        wrong = sum(
            min(
                len(r.split()),
                round(2 * (abs(point.alpha - 1.5) + abs(point.beta - 2.5))),
            )
            for r in REFERENCES
        )
        assert point.wer == pytest.approx(wrong / total_words)


def test_refinement_moves_towards_an_off_grid_optimum(rng):
    log_probs = _dev_set(rng)
    coarse = tune_alpha_beta(
        log_probs, REFERENCES, fake_decode, [0.0, 2.0, 4.0], [0.0, 2.0, 4.0]
    )
    refined = tune_alpha_beta(
        log_probs,
        REFERENCES,
        fake_decode,
        [0.0, 2.0, 4.0],
        [0.0, 2.0, 4.0],
        refine_steps=3,
    )
    assert refined.wer < coarse.wer
    assert refined.wer == 0.0
    assert abs(refined.alpha - BEST_ALPHA) + abs(refined.beta - BEST_BETA) < 0.25
    assert len(refined.table) > len(coarse.table)
    assert len({(p.alpha, p.beta) for p in refined.table}) == len(refined.table)


def test_ties_prefer_lower_cer_then_the_first_point(rng):
    log_probs = _dev_set(rng)

    def decode(log_probs, alpha, beta):
        words = REFERENCES[log_probs.shape[0] - 10].split()
        # Same WER (one wrong word) everywhere; the wrong word is closer at beta == 1.
        wrong = "tha" if beta == 1.0 else "zzzzzzzz"
        return " ".join([wrong] + words[1:])

    result = tune_alpha_beta(log_probs, REFERENCES, decode, [0.5, 1.0], [0.0, 1.0, 2.0])
    assert (result.alpha, result.beta) == (0.5, 1.0)


def test_bad_inputs_raise_typed_errors(rng):
    log_probs = _dev_set(rng)
    with pytest.raises(DataError, match="3 log-probability arrays but 2 references"):
        tune_alpha_beta(log_probs, REFERENCES[:2], fake_decode, [1.0], [1.0])
    with pytest.raises(DataError, match="empty"):
        tune_alpha_beta([], [], fake_decode, [1.0], [1.0])
    with pytest.raises(DataError, match=r"log_probs\[1\] must be a 2-D array"):
        tune_alpha_beta([log_probs[0], np.zeros(5)], REFERENCES[:2], fake_decode)
    with pytest.raises(DataError, match="has 5 classes, the first has 29"):
        tune_alpha_beta([log_probs[0], np.zeros((4, 5))], REFERENCES[:2], fake_decode)
    with pytest.raises(ConfigError, match="alphas"):
        tune_alpha_beta(log_probs, REFERENCES, fake_decode, [], [1.0])
    with pytest.raises(ConfigError, match="betas"):
        tune_alpha_beta(log_probs, REFERENCES, fake_decode, [1.0], [float("nan")])
    with pytest.raises(ConfigError, match="refine_steps"):
        tune_alpha_beta(
            log_probs, REFERENCES, fake_decode, [1.0], [1.0], refine_steps=-1
        )


def test_dev_set_file_round_trip(rng, tmp_path):
    log_probs = _dev_set(rng)
    path = save_log_probs(tmp_path / "dev.npz", log_probs, REFERENCES)
    loaded, references = load_log_probs(path)
    assert references == REFERENCES
    for original, read in zip(log_probs, loaded, strict=True):
        np.testing.assert_array_equal(original, read)


def test_dev_set_file_errors(rng, tmp_path):
    with pytest.raises(DataError, match="absent.npz: log-probabilities file not found"):
        load_log_probs(tmp_path / "absent.npz")
    no_references = tmp_path / "no_refs.npz"
    np.savez(no_references, log_probs_0=np.zeros((3, 4)))
    with pytest.raises(DataError, match="no 'references'"):
        load_log_probs(no_references)
    missing_array = tmp_path / "missing.npz"
    np.savez(
        missing_array, references=np.asarray(["a", "b"]), log_probs_0=np.zeros((3, 4))
    )
    with pytest.raises(DataError, match="missing array 'log_probs_1'"):
        load_log_probs(missing_array)
    not_npz = tmp_path / "text.npz"
    not_npz.write_text("hello")
    with pytest.raises(DataError, match="text.npz"):
        load_log_probs(not_npz)


def _spell(text, alphabet, ambiguous=None):
    """(T, V) float32 log-probabilities spelling ``text``, a letter then a blank.

    ``ambiguous`` maps a character position to ``{label: probability}`` for that frame.
    """
    frames = []
    for position, character in enumerate(text):
        probs = np.full(alphabet.n_classes, 0.02 / (alphabet.n_classes - 1))
        choices = (ambiguous or {}).get(position, {character: 0.98})
        for label, probability in choices.items():
            probs[alphabet.labels.index(label)] = probability
        frames.append(probs / probs.sum())
        blank = np.full(alphabet.n_classes, 0.02 / (alphabet.n_classes - 1))
        blank[alphabet.blank] = 0.98
        frames.append(blank)
    return np.log(np.asarray(frames)).astype(np.float32)


def test_real_beam_decoder_prefers_the_lm_with_more_weight(tmp_path):
    pytest.importorskip("kenlm")
    pytest.importorskip("npspeech.decoder.beam")
    from npspeech.alphabet import english
    from npspeech.lm.build import build_arpa, write_arpa
    from npspeech.lm.package import open_scorer
    from npspeech.lm.tune import beam_decode_fn

    alphabet = english()
    corpus = ["the cat sat on the mat"] * 5 + ["a sad dog sat on a log"] * 2
    arpa = write_arpa(build_arpa(corpus, order=3), tmp_path / "cats.arpa")
    reference = "the cat sat on the mat"
    # The acoustics lean to "sad" (d 0.55, t 0.43) at the last letter of "sat".
    position = reference.index("sat") + 2
    log_probs = [_spell(reference, alphabet, {position: {"d": 0.55, "t": 0.43}})]
    decode = beam_decode_fn(open_scorer(arpa), alphabet, beam_width=16)
    assert decode(log_probs[0], 0.0, 0.0) == "the cat sad on the mat"
    result = tune_alpha_beta(log_probs, [reference], decode, [0.0, 1.0], [0.0, 0.5])
    assert result.alpha == 1.0 and result.wer == 0.0
    by_point = {(p.alpha, p.beta): p.wer for p in result.table}
    assert by_point[(0.0, 0.0)] == pytest.approx(1 / 6)
    # Reusing one decoder across points gives what a fresh one gives.
    fresh = beam_decode_fn(open_scorer(arpa), alphabet, beam_width=16)
    assert fresh(log_probs[0], 1.0, 0.5) == decode(log_probs[0], 1.0, 0.5) == reference
    assert decode(log_probs[0], 0.0, 0.0) == fresh(log_probs[0], 0.0, 0.0) != reference
