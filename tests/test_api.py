"""The public model: DeepSpeech 0.9's API and names, audio inputs, errors, state kept.

Real recordings from the smoke-test set, DeepSpeech's scorer, a seeded random
``deepspeech`` model written to a model file and loaded as a user would.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
from helpers.inference_models import save_small_model, smoke_alphabet

import npspeech
from npspeech import constants, inference
from npspeech.api import Model
from npspeech.audio import load
from npspeech.config import DecodeConfig
from npspeech.errors import AudioError, ConfigError, DecoderError, ScorerError

WAV = "deepspeech_smoke/wav/LDC93S1.wav"
WAV_8K = "deepspeech_smoke/wav/LDC93S1_pcms16le_1_8000.wav"
SCORER = "deepspeech_smoke/lm/pruned_lm.scorer"


@pytest.fixture(scope="module")
def model_path(data_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("api") / "model.npz"
    return save_small_model(path, "deepspeech", smoke_alphabet(data_dir))


@pytest.fixture
def model(model_path):
    model = Model(model_path)
    model.set_beam_width(64)  # a real search, kept fast
    return model


def test_defaults_follow_deepspeech(model_path):
    model = npspeech.Model(model_path)
    assert isinstance(model, Model)
    assert model.beam_width == model.beamWidth() == 500
    assert model.sample_rate == model.sampleRate() == 16_000
    assert model.decode_config.decoder == "beam"  # DeepSpeech always beam-searches
    assert model.decoder.scorer is None
    # DeepSpeech's search settings, not npspeech's faster library defaults
    assert (model.decoder.cutoff_top_n, model.decoder.cutoff_prob) == (40, 1.0)
    assert constants.CUTOFF_PROB != 1.0


def test_audio_forms_agree(model, data_dir):
    path = data_dir / WAV
    int16, rate = soundfile.read(str(path), dtype="int16")
    assert rate == 16_000
    text = model.stt(path)
    assert len(text) >= 5
    assert model.stt(str(path)) == text
    assert model.stt(int16) == text
    assert model.stt(int16.tobytes()) == text
    assert model.stt(int16.astype(np.float32) / 32768) == text
    assert model.stt(int16.astype(np.float64) / 32768) == text


def test_other_rates_are_resampled(model, data_dir):
    path = data_dir / WAV_8K
    int16, rate = soundfile.read(str(path), dtype="int16")
    assert rate == 8000
    from_file = model.stt(path)
    assert model.stt(int16, sample_rate=8000) == from_file
    assert model.stt(int16.tobytes(), sample_rate=8000) == from_file
    with pytest.raises(AudioError, match="sample_rate is for arrays"):
        model.stt(path, sample_rate=8000)
    with pytest.raises(AudioError, match="sample_rate"):
        model.stt(int16, sample_rate=0)


def test_metadata(model, data_dir):
    model.enable_external_scorer(data_dir / SCORER)
    signal = load(data_dir / WAV)
    meta = model.stt_with_metadata(signal, num_results=3)
    full = model.transcribe_full(signal, n_best=3)
    assert len(meta.transcripts) == len(full) >= 2
    assert meta.transcripts[0].text == model.stt(signal)
    posteriors = [t.posterior for t in meta.transcripts]
    assert sum(posteriors) == pytest.approx(1.0)
    for transcript, candidate in zip(meta.transcripts, full, strict=True):
        # DeepSpeech's confidence is the summed log score, not a probability
        assert transcript.confidence == candidate.log_score < 0
        assert transcript.posterior == candidate.confidence
        assert "".join(t.text for t in transcript.tokens) == transcript.text
        for token in transcript.tokens:
            assert token.start_time == pytest.approx(token.timestep * 0.02)
        assert [w.word for w in transcript.words] == transcript.text.split()
    scores = [t.confidence for t in meta.transcripts]
    assert scores == sorted(scores, reverse=True)
    assert model.sttWithMetadata(signal, 3) == meta


def test_decoder_and_scorer_are_kept(model, data_dir):
    model.enable_external_scorer(data_dir / SCORER)
    decoder = model.decoder
    signal = load(data_dir / WAV)
    first = model.stt(signal)
    assert model.decoder is decoder
    caches = decoder._idle_lm_caches
    assert len(caches) == 1 and len(caches[0]) > 0  # KenLM's answers kept
    entries = len(caches[0])
    model.set_scorer_alpha_beta(0.5, 2.0)
    model.set_beam_width(32)
    model.add_hot_word("water", 1.0)
    assert model.decoder is decoder and decoder.scorer.alpha == 0.5
    assert len(decoder._idle_lm_caches[0]) >= entries
    model.set_beam_width(64)
    model.clear_hot_words()
    model.set_scorer_alpha_beta(*_file_weights(data_dir))
    assert model.stt(signal) == first


def _file_weights(data_dir):
    from npspeech.decoder.scorer import Scorer

    scorer = Scorer.from_file(data_dir / SCORER)
    return scorer.alpha, scorer.beta


def test_scorer_changes_and_disable(model, data_dir):
    signal = load(data_dir / WAV)
    plain = model.stt(signal)
    assert model.enableExternalScorer(str(data_dir / SCORER)) == 0
    with_lm = model.stt(signal)
    scored = model.stt_with_metadata(signal).transcripts[0]
    assert scored.text == with_lm
    model.disable_external_scorer()
    unscored = model.stt_with_metadata(signal).transcripts[0]
    assert unscored.text == plain
    # the LM and word-bonus terms are in the score
    assert scored.confidence != pytest.approx(unscored.confidence)
    model.enable_external_scorer(data_dir / SCORER)
    assert model.setScorerAlphaBeta(0.0, 0.0) == 0
    assert model.decoder.scorer.alpha == 0.0
    assert model.disableExternalScorer() == 0
    assert model.decoder.scorer is None
    assert model.stt(signal) == plain


def test_hot_words(model, data_dir):
    signal = load(data_dir / WAV)
    before = model.stt(signal)
    assert "zebra" not in before
    assert model.addHotWord("zebra", 25.0) == 0
    assert model.hot_words == {"zebra": 25.0}
    assert "zebra" in model.stt(signal)
    assert model.eraseHotWord("zebra") == 0
    assert model.stt(signal) == before
    model.add_hot_word("zebra", 25.0)
    assert model.clearHotWords() == 0
    assert model.hot_words == {}
    assert model.stt(signal) == before


def test_greedy_on_request(model, model_path, data_dir):
    signal = load(data_dir / WAV)
    model.set_decoder(DecodeConfig(decoder="greedy"))
    greedy = model.stt(signal)
    base = inference.Model.load(model_path)
    assert base.decode_config.decoder == "greedy"  # the base class's default
    assert base.transcribe(signal) == greedy
    model.set_beam_width(64)  # a DeepSpeech setter goes back to the beam search
    assert model.decode_config.decoder == "beam"


def test_one_liner(model_path, data_dir):
    path = data_dir / WAV
    expected = Model(model_path).stt(path)
    assert npspeech.transcribe(path, model=model_path) == expected
    assert npspeech.transcribe(path, model=Model(model_path)) == expected


@pytest.mark.parametrize(
    ("audio", "match"),
    [
        (np.array([0.1, 2.5, -0.3], dtype=np.float32), r"\[-1, 1\]"),
        (np.zeros((100, 2), dtype=np.int16), "1-D mono"),
        (np.zeros((1, 100), dtype=np.int16), "ambiguous"),
        (np.array([0.0, np.nan], dtype=np.float32), "non-finite"),
        (np.zeros(100, dtype=np.int32), "int32"),
        ([0, 1, 2], "list"),
        (b"\x00\x01\x02", "bytes"),
    ],
)
def test_bad_audio(model, audio, match):
    with pytest.raises(AudioError, match=match):
        model.stt(audio)


def test_bad_settings(model, data_dir, tmp_path):
    with pytest.raises(ScorerError, match="not found"):
        model.enable_external_scorer(tmp_path / "missing.scorer")
    with pytest.raises(ConfigError, match="needs a scorer"):
        model.set_scorer_alpha_beta(1.0, 1.0)
    for width in (-1, 0, 2.5, True):
        with pytest.raises(ConfigError, match="beam_width"):
            model.set_beam_width(width)
    for word in ("日本", "r2d2"):
        with pytest.raises(DecoderError, match="cannot be spelled"):
            model.add_hot_word(word, 2.0)
    model.add_hot_word("Naïve", 2.0)  # case and accents are normalised away
    with pytest.raises(ConfigError, match="non-empty"):
        model.add_hot_word(" ", 2.0)
    with pytest.raises(ConfigError, match="finite"):
        model.add_hot_word("home", float("nan"))
    with pytest.raises(ConfigError, match="not a hot-word"):
        model.erase_hot_word("home")
    model.enable_external_scorer(data_dir / SCORER)
    with pytest.raises(ConfigError, match="finite"):
        model.set_scorer_alpha_beta(float("inf"), 1.0)
    with pytest.raises(DecoderError, match="num_results"):
        model.stt_with_metadata(load(data_dir / WAV), num_results=0)
    with pytest.raises(AudioError, match="not found|does not exist|missing"):
        model.stt(tmp_path / "missing.wav")


def test_short_audio_gives_empty_text(model):
    assert model.stt(np.zeros(100, dtype=np.int16)) == ""
    assert (
        model.stt_with_metadata(np.zeros(0, dtype=np.int16)).transcripts[0].text == ""
    )
