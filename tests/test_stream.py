"""Streams: audio fed in random chunks decodes as the whole recording does at once.

Real recordings from the smoke-test and ARCTIC sets; seeded random one-way models
(``deepspeech`` and ``ds2-stream``) with varied outputs; best path and the beam search
with DeepSpeech's scorer.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers.inference_models import small_model, smoke_alphabet

from npspeech.api import Model
from npspeech.audio import load
from npspeech.config import DecodeConfig
from npspeech.errors import AudioError, ConfigError, DecoderError

FILES = (
    "deepspeech_smoke/wav/LDC93S1.wav",
    "deepspeech_smoke/wav/arctic_a0024.wav",
    "kathleen_arctic/flac/arctic_a0030_1592747865.flac",
)
BEAM_WIDTH = 64  # wide enough for a real search, small enough to stay fast


@pytest.fixture(scope="module")
def alphabet(data_dir):
    return smoke_alphabet(data_dir)


@pytest.fixture(scope="module", params=["deepspeech", "ds2-stream"])
def model(request, alphabet):
    network, features = small_model(request.param, alphabet)
    return Model.from_network(network, features, alphabet)


def _use(model, decoder, data_dir):
    if decoder == "greedy":
        model.set_decoder(DecodeConfig(decoder="greedy"))
    else:
        scorer = data_dir / "deepspeech_smoke" / "lm" / "pruned_lm.scorer"
        model.set_decoder(
            DecodeConfig(decoder="beam", beam_width=BEAM_WIDTH, scorer=str(scorer))
        )


def _feed_randomly(stream, signal, rng, kinds=("float", "int16", "bytes")):
    """Feed ``signal`` in chunks of 1 sample to 1.5 s, in every accepted form."""
    int16 = np.round(signal * 32768).clip(-32768, 32767).astype(np.int16)
    position = 0
    while position < signal.shape[0]:
        size = int(
            rng.choice([1, int(rng.integers(2, 400)), int(rng.integers(400, 24000))])
        )
        kind = kinds[int(rng.integers(len(kinds)))]
        part = slice(position, position + size)
        if kind == "float":
            stream.feed_audio_content(signal[part])
        elif kind == "int16":
            stream.feed_audio_content(int16[part])
        else:
            stream.feed_audio_content(int16[part].tobytes())
        position += size
        if rng.random() < 0.2:
            assert isinstance(stream.intermediate_decode(), str)


def _timeline(candidate):
    return [(t.text, t.frame, round(t.start_time, 9)) for t in candidate.tokens]


@pytest.mark.parametrize("decoder", ["greedy", "beam"])
def test_stream_equals_offline(model, decoder, data_dir, rng):
    _use(model, decoder, data_dir)
    for name in FILES:
        # int16-exact samples, so that every chunk form carries the same values
        signal = np.round(load(data_dir / name) * 32768) / 32768
        signal = signal.astype(np.float32)
        offline = model.transcribe_full(signal, n_best=2)
        stream = model.create_stream()
        _feed_randomly(stream, signal, rng)
        streamed = stream.finish_stream_with_metadata(num_results=2).transcripts
        best = offline[0]
        # the equality means something: many tokens, several distinct labels
        assert len(best.tokens) >= 5 and len({t.text for t in best.tokens}) >= 3
        assert [c.text for c in offline] == [t.text for t in streamed], name
        assert [(t.text, t.frame) for t in best.tokens] == [
            (t.text, t.timestep) for t in streamed[0].tokens
        ], name
        assert [w.word for w in best.words] == [w.word for w in streamed[0].words]
        np.testing.assert_allclose(
            [w.start_time for w in best.words],
            [w.start_time for w in streamed[0].words],
        )
        np.testing.assert_allclose(
            [c.log_score for c in offline],
            [t.confidence for t in streamed],
            rtol=1e-4,
            atol=1e-3,
        )


def test_finish_text_and_intermediate(model, data_dir, rng):
    _use(model, "beam", data_dir)
    signal = load(data_dir / FILES[0])
    stream = model.create_stream()
    half = signal.shape[0] // 2
    stream.feedAudioContent(signal[:half])
    text = stream.intermediateDecode()
    meta = stream.intermediateDecodeWithMetadata(2)
    assert meta.transcripts[0].text == text
    assert stream.n_frames > 0
    stream.feedAudioContent(signal[half:])
    final = stream.finishStream()
    assert final == model.stt(signal)
    with pytest.raises(DecoderError, match="finished or freed"):
        stream.feed_audio_content(signal[:100])
    with pytest.raises(DecoderError, match="finished or freed"):
        stream.intermediate_decode()


def test_greedy_stream_keeps_no_frames(model, data_dir):
    """The greedy stream's memory is the transcript, not the audio."""
    _use(model, "greedy", data_dir)
    stream = model.create_stream()
    signal = load(data_dir / FILES[1])
    stream.feed_audio_content(signal)
    decoder_stream = stream._decoder
    assert not hasattr(decoder_stream, "_chunks")
    assert stream.finish_stream() == model.stt(signal)


def test_short_and_empty_streams(model, data_dir):
    _use(model, "greedy", data_dir)
    stream = model.create_stream()
    stream.feed_audio_content(np.zeros(0, dtype=np.int16))
    stream.feed_audio_content(np.zeros(10, dtype=np.int16))
    assert stream.finish_stream() == ""
    stream = model.create_stream()
    stream.free_stream()
    stream.freeStream()  # twice is harmless
    with pytest.raises(DecoderError):
        stream.finish_stream()


def test_bad_chunks(model):
    stream = model.create_stream()
    with pytest.raises(AudioError, match=r"\[-1, 1\]"):
        stream.feed_audio_content(np.array([0.5, 3000.0], dtype=np.float32))
    with pytest.raises(AudioError, match="1-D"):
        stream.feed_audio_content(np.zeros((10, 2), dtype=np.int16))
    with pytest.raises(AudioError, match="int16"):
        stream.feed_audio_content(np.zeros(10, dtype=np.int32))
    with pytest.raises(AudioError, match="non-finite"):
        stream.feed_audio_content(np.array([0.0, np.nan], dtype=np.float32))
    with pytest.raises(AudioError, match="bytes"):
        stream.feed_audio_content(b"\x00\x01\x02")


def test_bidirectional_model_refuses_to_stream(alphabet):
    network, features = small_model("ds2", alphabet)
    model = Model.from_network(network, features, alphabet)
    with pytest.raises(ConfigError, match="bidirectional"):
        model.create_stream()
    with pytest.raises(ConfigError, match="bidirectional"):
        model.createStream()


def test_greedy_decoder_stream_equals_greedy_decode(alphabet, rng):
    """The best path over chunks equals one pass, repeats held across chunk edges."""
    from npspeech.decoder.greedy import GreedyDecoderStream, greedy_decode
    from npspeech.nn.activations import log_softmax

    V = alphabet.n_classes
    # long runs of one class, so that labels continue over many chunk boundaries
    classes = np.repeat(rng.integers(0, V, size=60), rng.integers(1, 6, size=60))
    logits = rng.normal(size=(classes.shape[0], V)).astype(np.float32)
    logits[np.arange(classes.shape[0]), classes] += 6.0
    log_probs = log_softmax(logits)
    expected = greedy_decode(log_probs, alphabet, 0.02)
    stream = GreedyDecoderStream(alphabet, 0.02)
    position = 0
    while position < log_probs.shape[0]:
        size = int(rng.integers(0, 4))
        stream.feed(log_probs[position : position + size])
        position += size
    assert stream.intermediate_text() == expected.text
    (result,) = stream.finish()
    assert result.tokens == expected.tokens and result.words == expected.words
    # summed chunk by chunk in float64, at once in float32
    assert result.log_score == pytest.approx(expected.log_score, rel=1e-6)
    with pytest.raises(DecoderError, match="finished"):
        stream.feed(log_probs[:1])


@pytest.mark.parametrize("n_context", [0, 3])
def test_feature_stream_changes_kernels_between_feeds(n_context, data_dir, rng):
    """A stream's features may move from the NumPy reference to the compiled kernels
    (and back) between chunks; ``n_new_frames`` says beforehand what a feed returns."""
    from npspeech import features
    from npspeech.config import FeatureConfig

    config = FeatureConfig(n_context=n_context)
    signal = load(data_dir / FILES[1])
    stream = features.FeatureStream(config, backend="numpy")
    parts, used, position = [], set(), 0
    while position < signal.shape[0]:
        chunk = signal[position : position + int(rng.integers(1, 3000))]
        stream.backend = str(rng.choice(["numpy", "numba"]))
        used.add(stream.backend)
        expected = stream.n_new_frames(chunk.shape[0])
        parts.append(stream.feed(chunk))
        assert parts[-1].shape[0] == expected
        position += chunk.shape[0]
    parts.append(stream.finish())
    assert used == {"numpy", "numba"}
    reference = features.compute(signal, config, backend="numpy")
    np.testing.assert_allclose(np.concatenate(parts), reference, rtol=1e-4, atol=1e-4)
