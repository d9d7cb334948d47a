"""The beam search under Hypothesis: random, degenerate and invalid inputs give results
or DecoderError, never a crash; the compiled search stays equal to the oracle."""

from __future__ import annotations

from pathlib import Path

import kenlm
import numpy as np
import pytest
from helpers.tolerances import DECODER_SCORE_ATOL
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from npspeech.alphabet import Alphabet
from npspeech.decoder import beam as beam_module
from npspeech.decoder.beam import BeamSearchDecoder
from npspeech.decoder.scorer import Scorer, read_arpa_unigrams
from npspeech.errors import DecoderError
from npspeech.nn.activations import log_softmax

TINY_ARPA = Path(__file__).parent / "data" / "tiny_bigram.arpa"
SMALL = Alphabet([" ", "a", "b", "c"])  # V = 5
FUZZ = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

_SCORER = Scorer(
    kenlm.Model(str(TINY_ARPA)), 0.7, 0.4, vocabulary=read_arpa_unigrams(TINY_ARPA)
)
DECODERS = [
    BeamSearchDecoder(SMALL, beam_width=4),
    BeamSearchDecoder(SMALL, beam_width=6, cutoff_top_n=3, cutoff_prob=0.9),
    BeamSearchDecoder(SMALL, beam_width=6, scorer=_SCORER, hotwords={"ab": 0.8}),
]


@st.composite
def valid_log_probs(draw):
    """(T, 5) float32 log-softmax values, some classes impossible (-inf) per frame."""
    T = draw(st.integers(0, 14))
    logits = draw(
        arrays(np.float64, (T, SMALL.n_classes), elements=st.floats(-30, 30, width=32))
    )
    impossible = draw(arrays(np.bool_, (T, SMALL.n_classes)))
    log_probs = log_softmax(logits)
    # keep each frame's likeliest class possible
    impossible[np.arange(T), np.argmax(log_probs, axis=1)] = False
    log_probs[impossible] = -np.inf
    return log_probs.astype(np.float32)


@FUZZ
@given(log_probs=valid_log_probs(), which=st.integers(0, len(DECODERS) - 1))
def test_valid_input_always_decodes(log_probs, which):
    decoder = DECODERS[which]
    results = decoder.decode(log_probs, n_best=3)
    assert 1 <= len(results) <= 3
    assert sum(r.confidence for r in results) == pytest.approx(1.0, abs=1e-9)
    for result in results:
        assert np.isfinite(result.log_score)
        assert set(result.text) <= set(SMALL.labels)
        frames = [token.frame for token in result.tokens]
        assert frames == sorted(set(frames)) and len(frames) == len(result.text)
    if beam_module._compiled is not None:
        oracle = decoder.new_search(reference=True)
        oracle.feed(log_probs)
        want = oracle.best(3)
        assert [r.text for r in results] == [SMALL.decode(labels) for labels, _ in want]
        np.testing.assert_allclose(
            [r.log_score for r in results],
            [s for _, s in want],
            atol=DECODER_SCORE_ATOL,
        )


@FUZZ
@given(log_probs=valid_log_probs(), cuts=st.lists(st.integers(0, 14), max_size=4))
def test_any_chunking_streams_to_the_same_result(log_probs, cuts):
    decoder = DECODERS[2]
    stream = decoder.stream()
    for chunk in np.split(log_probs, sorted(c for c in cuts if c <= len(log_probs))):
        stream.feed(chunk)
    assert stream.finish(n_best=2) == decoder.decode(log_probs, n_best=2)


@FUZZ
@given(T=st.integers(0, 20))
def test_all_blank_frames_give_an_empty_transcript(T):
    log_probs = np.full((T, SMALL.n_classes), -np.inf, dtype=np.float32)
    log_probs[:, SMALL.blank] = 0.0
    for decoder in DECODERS:
        (result,) = decoder.decode(log_probs)
        assert result.text == "" and result.tokens == [] and result.confidence == 1.0


@FUZZ
@given(
    values=arrays(
        np.float32,
        st.tuples(st.integers(0, 6), st.integers(0, 7)),
        elements=st.floats(allow_nan=True, allow_infinity=True, width=32),
    )
)
def test_arbitrary_arrays_decode_or_raise_decoder_error(values):
    try:
        results = DECODERS[2].decode(values)
    except DecoderError as error:
        assert str(error)
    else:
        assert values.shape[1] == SMALL.n_classes
        assert not np.isnan(values).any() and (values <= 1e-3).all()
        assert results and results[0].confidence > 0


@FUZZ
@given(shape=st.lists(st.integers(0, 4), min_size=0, max_size=4))
def test_mis_shaped_input_raises_decoder_error(shape):
    values = np.zeros(shape, dtype=np.float32)
    if len(shape) == 2 and shape[1] == SMALL.n_classes:
        assert DECODERS[0].decode(values - np.log(5.0))
        return
    with pytest.raises(DecoderError):
        DECODERS[0].decode(values)
