"""The inference network: offline equals the training forward pass, streaming equals
offline for any chunking, for every architecture and both kernel sets."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from npspeech import models
from npspeech.config import ModelConfig
from npspeech.errors import ConfigError
from npspeech.runtime import InferenceNetwork, StreamState

N_INPUT = 7
N_CLASSES = 5
# float32 through a few layers: relative to the logits' scale
ATOL = 2e-5
RTOL = 2e-4

CONFIGS = {
    "deepspeech": ModelConfig(
        architecture="deepspeech", n_hidden=12, n_context=3, dropout=0.0
    ),
    "ds2": ModelConfig(
        architecture="ds2",
        n_hidden=10,
        dropout=0.0,
        conv_channels=(3, 2),
        conv_kernels=((5, 3), (3, 2)),
        conv_strides=((2, 2), (1, 1)),
        conv_padding=((2, 1), (1, 0)),
        rnn_kind="gru",
        rnn_layers=2,
    ),
    "ds2-stream": ModelConfig(
        architecture="ds2-stream",
        n_hidden=10,
        dropout=0.0,
        conv_channels=(3, 2),
        conv_kernels=((5, 3), (3, 2)),
        conv_strides=((2, 2), (1, 1)),
        conv_padding=((2, 1), (1, 0)),
        rnn_kind="gru",
        rnn_layers=2,
        lookahead_context=3,
    ),
}
# the other recurrent kinds of ds2-stream, one layer each
KINDS = {
    f"ds2-stream-{kind}": dataclasses.replace(
        CONFIGS["ds2-stream"], rnn_kind=kind, rnn_layers=2
    )
    for kind in ("lstm", "rnn")
}
ALL = {**CONFIGS, **KINDS}
BACKENDS = ("numpy", "numba")


def _network(config: ModelConfig, rng: np.random.Generator) -> models.Network:
    """A random network whose batch norms are not the identity (so that folding them
    is exercised), with biases large enough to matter."""
    network = models.init(config, N_INPUT, N_CLASSES, rng)
    for name, value in network.params.items():
        if name.endswith("/b") or "/b_" in name or name.endswith("/beta"):
            network.params[name] = rng.normal(0, 0.3, value.shape).astype(value.dtype)
        elif name.endswith("/gamma"):
            network.params[name] = rng.uniform(0.5, 1.5, value.shape).astype(
                value.dtype
            )
    for name, value in network.state.items():
        if name.endswith("running_mean"):
            network.state[name] = rng.normal(0, 0.5, value.shape).astype(value.dtype)
        else:
            network.state[name] = rng.uniform(0.5, 2.0, value.shape).astype(value.dtype)
    return network


def _batch(rng, lengths, T=None):
    lengths = np.asarray(lengths, dtype=np.int32)
    T = int(lengths.max()) if T is None else T
    x = rng.normal(0, 1, (T, lengths.size, N_INPUT)).astype(np.float32)
    x[np.arange(T)[:, None] >= lengths[None, :]] = 0
    return x, lengths


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(ALL))
def test_offline_equals_training_forward(name, backend, rng):
    network = _network(ALL[name], rng)
    runtime = InferenceNetwork(network, backend=backend)
    features, lengths = _batch(rng, [37, 20, 1, 29], T=40)
    expected, expected_lengths, _ = models.forward(network, features, lengths)
    logits, out_lengths = runtime.forward(features, lengths)
    assert logits.dtype == np.float32 and out_lengths.dtype == np.int32
    np.testing.assert_array_equal(out_lengths, expected_lengths)
    assert logits.shape == expected.shape
    np.testing.assert_allclose(logits, expected, rtol=RTOL, atol=ATOL)
    # padding never leaks: padded frames are zero and a sequence alone gives the same
    for b, length in enumerate(out_lengths):
        assert not logits[length:, b].any()
    alone, _ = runtime.forward(features[: lengths[0], :1], lengths[:1])
    np.testing.assert_allclose(
        alone[:, 0], logits[: out_lengths[0], 0], rtol=RTOL, atol=ATOL
    )


def test_offline_leaves_input_unchanged(rng):
    network = _network(CONFIGS["ds2-stream"], rng)
    features, lengths = _batch(rng, [20, 11])
    features[15:, 1] = 5.0  # junk past a length is ignored, and not overwritten
    before = features.copy()
    logits, _ = InferenceNetwork(network, "numpy").forward(features, lengths)
    np.testing.assert_array_equal(features, before)
    clean = features.copy()
    clean[15:, 1] = 0
    again, _ = InferenceNetwork(network, "numpy").forward(clean, lengths)
    np.testing.assert_allclose(logits, again, rtol=RTOL, atol=ATOL)


def _stream(runtime, features, sizes, final_empty=False):
    """Feed (T, F) features in chunks of the given sizes (cycled), then finish."""
    state = runtime.new_state()
    outputs, start, i = [], 0, 0
    T = features.shape[0]
    while start < T:
        size = sizes[i % len(sizes)]
        i += 1
        chunk = features[start : start + size]
        start += size
        last = start >= T and not final_empty
        outputs.append(runtime.forward_chunk(chunk, state, final=last))
        assert outputs[-1].shape[1:] == (runtime.n_classes,)
    if final_empty or T == 0:
        outputs.append(
            runtime.forward_chunk(np.zeros((0, runtime.n_input)), state, final=True)
        )
    assert state.finished and state.frames_in == T
    result = np.concatenate(outputs)
    assert state.frames_out == result.shape[0]
    return result


CHUNKINGS = {
    "one-frame": [1],
    "odd": [3, 7, 2, 5],
    "with-empty": [4, 0, 1, 0, 9],
    "all-at-once": [10_000],
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("chunks", list(CHUNKINGS))
@pytest.mark.parametrize("name", ["deepspeech", "ds2-stream", *KINDS])
def test_streaming_equals_offline(name, chunks, backend, rng):
    network = _network(ALL[name], rng)
    runtime = InferenceNetwork(network, backend=backend)
    features, lengths = _batch(rng, [41])
    offline, out_lengths = runtime.forward(features, lengths)
    streamed = _stream(runtime, features[:, 0], CHUNKINGS[chunks])
    assert streamed.shape == (out_lengths[0], N_CLASSES)
    np.testing.assert_allclose(streamed, offline[:, 0], rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", ["deepspeech", "ds2-stream"])
def test_streaming_random_chunks_and_empty_final(name, rng):
    network = _network(CONFIGS[name], rng)
    runtime = InferenceNetwork(network, backend="numba")
    for T in (0, 1, 2, 6, 23, 64):
        features, lengths = _batch(rng, [max(T, 1)], T=T)
        sizes = list(rng.integers(0, 9, size=12))
        sizes[0] = max(sizes[0], 1)
        streamed = _stream(runtime, features[:, 0], sizes, final_empty=bool(T % 2))
        if T == 0:
            assert streamed.shape == (0, N_CLASSES)
            continue
        expected, out_lengths, _ = models.forward(network, features, lengths)
        if out_lengths[0] == 0:
            assert streamed.shape[0] == 0
            continue
        np.testing.assert_allclose(streamed, expected[:, 0], rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", ["deepspeech", "ds2-stream"])
def test_stream_holds_back_only_what_the_model_needs(name, rng):
    network = _network(CONFIGS[name], rng)
    runtime = InferenceNetwork(network, backend="numba")
    state = runtime.new_state()
    assert isinstance(state, StreamState)
    features = rng.normal(0, 1, (200, N_INPUT)).astype(np.float32)
    produced = 0
    for t in range(200):
        produced += runtime.forward_chunk(features[t : t + 1], state).shape[0]
        if name == "deepspeech":
            # an output frame needs n_context future frames
            assert produced == max(0, t + 1 - CONFIGS[name].n_context)
        # buffers stay bounded, whatever the stream's length
        assert sum(b.shape[0] for b in state.buffers) <= 16
    if name == "ds2-stream":
        # 200 frames give 100 outputs; the last of conv 1 (kernel 5, padding 2,
        # stride 2) reads the end padding, as does conv 2's (kernel 3, padding 1),
        # and the lookahead waits for 3 frames: 100 - 1 - 1 - 3 are out
        assert produced == 95
    rest = runtime.forward_chunk(features[:0], state, final=True)
    assert (
        produced + rest.shape[0]
        == models.output_lengths(network.config, np.array([200]))[0]
    )


def test_bidirectional_model_cannot_stream(rng):
    runtime = InferenceNetwork(_network(CONFIGS["ds2"], rng), backend="numpy")
    assert not runtime.streamable
    with pytest.raises(ConfigError, match="'ds2'.*bidirectional"):
        runtime.new_state()


def test_bad_input_is_named(rng):
    runtime = InferenceNetwork(_network(CONFIGS["deepspeech"], rng), backend="numpy")
    assert runtime.streamable and runtime.time_stride == 1
    assert (runtime.n_input, runtime.n_classes) == (N_INPUT, N_CLASSES)
    with pytest.raises(ConfigError, match=r"\(T, B, 7\)"):
        runtime.forward(np.zeros((4, 1, 3), np.float32), np.array([4]))
    with pytest.raises(ConfigError, match="lengths"):
        runtime.forward(np.zeros((4, 2, 7), np.float32), np.array([5, 1]))
    state = runtime.new_state()
    with pytest.raises(ConfigError, match=r"\(T_chunk, 7\)"):
        runtime.forward_chunk(np.zeros((3, 6)), state)
    runtime.forward_chunk(np.zeros((3, 7)), state, final=True)
    with pytest.raises(ConfigError, match="finished"):
        runtime.forward_chunk(np.zeros((3, 7)), state)
    with pytest.raises(ConfigError, match="numpy or numba"):
        InferenceNetwork(_network(CONFIGS["deepspeech"], rng), backend="torch")
    stride = InferenceNetwork(_network(CONFIGS["ds2-stream"], rng), "numpy").time_stride
    assert stride == 2


def test_threads_split_the_work_without_changing_results(rng):
    import numba

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("one Numba thread only")
    network = _network(CONFIGS["ds2-stream"], rng)
    runtime = InferenceNetwork(network, backend="numba")
    features, lengths = _batch(rng, [150, 90, 120], T=150)  # several row blocks
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one, _ = runtime.forward(features, lengths)
        numba.set_num_threads(2)
        two, _ = runtime.forward(features, lengths)
    finally:
        numba.set_num_threads(before)
    # each row and each sequence is computed by the same code on either split
    np.testing.assert_array_equal(one, two)


def test_float64_network_runs_in_float32(rng):
    network = _network(CONFIGS["deepspeech"], rng).astype(np.float64)
    features, lengths = _batch(rng, [12, 7])
    logits, _ = InferenceNetwork(network, "numba").forward(features, lengths)
    expected, _, _ = models.forward(network, features.astype(np.float64), lengths)
    assert logits.dtype == np.float32
    np.testing.assert_allclose(logits, expected, rtol=RTOL, atol=ATOL)
