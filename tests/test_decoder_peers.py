"""The beam search against pyctcdecode on the same inputs (test-only peer)."""

from __future__ import annotations

import numpy as np
import pytest

from npspeech.alphabet import Alphabet, english
from npspeech.decoder.beam import BeamSearchDecoder
from npspeech.decoder.scorer import Scorer
from npspeech.nn import activations

pytestmark = pytest.mark.peers


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """float32 log-probabilities of float64 logits (computed in float64)."""
    return activations.log_softmax(logits).astype(np.float32)


def peaky_log_probs(rng, alphabet: Alphabet, text: str, noise: float, peak: float):
    """Each label held 2 frames then 2 blank frames; Gaussian noise on all logits."""
    blank = alphabet.blank
    path = [blank]
    for label in alphabet.encode(text):
        path += [int(label), int(label), blank, blank]
    logits = rng.normal(0.0, noise, size=(len(path), alphabet.n_classes))
    logits[np.arange(len(path)), path] += peak
    return log_softmax(logits)


def peer_decoder(alphabet: Alphabet, **options):
    pyctcdecode = pytest.importorskip("pyctcdecode")
    # pyctcdecode reads the blank as "" and takes the labels in class order
    return pyctcdecode.build_ctcdecoder(list(alphabet.labels) + [""], **options)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_same_text_and_word_starts_without_lm(seed):
    alphabet = english()
    rng = np.random.default_rng(seed)
    log_probs = peaky_log_probs(rng, alphabet, "we must find a new home", 0.8, 6.0)
    peer = peer_decoder(alphabet)
    text, _, word_frames, _, _ = peer.decode_beams(log_probs, beam_width=16)[0]
    ours = BeamSearchDecoder(alphabet, beam_width=16).decode(log_probs)[0]
    assert ours.text == text
    starts = np.asarray([round(word.start_time / 0.02) for word in ours.words])
    peer_starts = np.asarray([start for _, (start, _) in word_frames])
    # pyctcdecode times a letter by its frame of highest probability, npspeech by the
    # first frame on the best alignment: the two differ by at most a frame here
    assert np.abs(starts - peer_starts).max() <= 1


@pytest.mark.data
def test_both_repair_a_noisy_sentence_with_the_same_lm(data_dir):
    alphabet = Alphabet.from_file(data_dir / "deepspeech_smoke" / "alphabet.txt")
    path = data_dir / "deepspeech_smoke" / "lm" / "pruned_lm.scorer"
    scorer = Scorer.from_file(path)
    peer = peer_decoder(
        alphabet,
        kenlm_model_path=str(path),
        unigrams=list(scorer.vocabulary),
        alpha=scorer.alpha,
        beta=scorer.beta,
    )
    text = "my son had been in the world center"
    log_probs = peaky_log_probs(np.random.default_rng(0), alphabet, text, 1.2, 4.5)
    ours = BeamSearchDecoder(alphabet, beam_width=32, scorer=scorer).decode(log_probs)
    assert ours[0].text == text
    assert peer.decode(log_probs, beam_width=32) == text
