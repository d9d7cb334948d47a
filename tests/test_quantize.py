"""int8 models: the quantiser, the int8 kernels against their NumPy reference
(streaming state included), the model file's int8 format and ``npspeech quantize``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_runtime import ALL, _batch, _network, _stream

from npspeech import modelfile, models
from npspeech.alphabet import Alphabet
from npspeech.config import FeatureConfig, ModelConfig
from npspeech.errors import ConfigError, ModelFileError
from npspeech.quantize import (
    QuantizedNetwork,
    dequantize,
    quantize_columns,
    quantize_file,
    quantize_network,
)
from npspeech.runtime import InferenceNetwork, _numba, _reference

GATES = {"lstm": 4, "gru": 3, "rnn": 1}


# -- the quantiser ---------------------------------------------------------------------


@pytest.mark.parametrize("axis", [0, 1])
def test_quantize_columns_bounds_and_round_trip(axis, rng):
    W = rng.normal(0, 1, (37, 21)).astype(np.float32) * rng.uniform(0.01, 5, 21)
    W[:, 3] = 0.0  # a zero column
    W[5, :] = 0.0  # and a zero row: for axis 0 a zero channel
    q, scale = quantize_columns(W, axis)
    assert q.dtype == np.int8 and q.shape == W.shape
    assert scale.dtype == np.float32 and scale.shape == (W.shape[axis],)
    assert np.abs(q).max() == 127 and q.min() >= -127
    shape = (1, -1) if axis == 1 else (-1, 1)
    back = dequantize(q, scale, axis)
    # each value within half a step of its channel, and the extreme one exact
    assert np.all(np.abs(back - W) <= scale.reshape(shape) / 2 * (1 + 1e-6))
    zero = 3 if axis == 1 else 5
    assert scale[zero] == 1.0 and not np.take(q, zero, axis=axis).any()
    # quantising the dequantised weight gives back the same codes and scales
    q2, scale2 = quantize_columns(back, axis)
    np.testing.assert_array_equal(q2, q)
    np.testing.assert_allclose(scale2, scale, rtol=1e-6)
    np.testing.assert_array_equal(dequantize(q2, scale2, axis), back)


def test_quantize_columns_refuses_nan():
    W = np.ones((3, 4), np.float32)
    W[1, 2] = np.nan
    with pytest.raises(ConfigError, match="NaN"):
        quantize_columns(W)


# -- int8 kernels against the reference ------------------------------------------------


def _run(kernels, kind, xw, lengths, q, scale, bias, h, c):
    h, c = h.copy(), c.copy()
    y = np.full((xw.shape[0], xw.shape[1], h.shape[1]), np.nan, dtype=np.float32)
    packed = kernels.pack_recurrent_int8(q, scale)
    if kind == "lstm":
        kernels.lstm_sequence(xw, lengths, packed, bias, h, c, y)
    elif kind == "gru":
        kernels.gru_sequence(xw, lengths, packed, bias, h, y)
    else:
        kernels.rnn_sequence(xw, lengths, packed, bias, h, np.float32(20.0), y)
    return y, h, c


@pytest.mark.parametrize("H", [5, 40])
@pytest.mark.parametrize("kind", list(GATES))
def test_int8_recurrent_kernels_match_reference(kind, H, rng):
    G = GATES[kind]
    B, T = 4, 9
    xw = rng.normal(0, 2, (T, B, G * H)).astype(np.float32)
    W_hh = rng.normal(0, 1 / np.sqrt(H), (H, G * H)).astype(np.float32)
    q, scale = quantize_columns(W_hh)
    bias = rng.normal(0, 0.5, G * H).astype(np.float32)
    h0 = np.abs(rng.normal(0, 0.5, (B, H))).astype(np.float32)
    c0 = rng.normal(0, 1, (B, H)).astype(np.float32)
    lengths = np.array([9, 0, 4, 9])
    args = (xw, lengths, q, scale, bias, h0, c0)
    y_ref, h_ref, c_ref = _run(_reference, kind, *args)
    y, h, c = _run(_numba, kind, *args)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h, h_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c, c_ref, rtol=1e-5, atol=1e-6)
    # the reference is the float recurrence on the dequantised weight
    y_float, _, _ = _run_float(kind, xw, lengths, dequantize(q, scale), bias, h0, c0)
    np.testing.assert_allclose(y_ref, y_float, rtol=1e-5, atol=1e-6)
    # the state carries across chunks
    full = np.array([T] * B)
    y1, h1, c1 = _run(_numba, kind, xw[:4], full, q, scale, bias, h0, c0)
    y2, h2, c2 = _run(_numba, kind, xw[4:], full, q, scale, bias, h1, c1)
    y_all, h_all, _ = _run(_reference, kind, xw, full, q, scale, bias, h0, c0)
    np.testing.assert_allclose(np.concatenate([y1, y2]), y_all, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h2, h_all, rtol=1e-5, atol=1e-6)


def _run_float(kind, xw, lengths, W_hh, bias, h, c):
    h, c = h.copy(), c.copy()
    y = np.zeros((xw.shape[0], xw.shape[1], h.shape[1]), dtype=np.float32)
    if kind == "lstm":
        _reference.lstm_sequence(xw, lengths, W_hh, bias, h, c, y)
    elif kind == "gru":
        _reference.gru_sequence(xw, lengths, W_hh, bias, h, y)
    else:
        _reference.rnn_sequence(xw, lengths, W_hh, bias, h, np.float32(20.0), y)
    return y, h, c


@pytest.mark.parametrize("M", [1, 150])
def test_int8_dense_kernels_match_reference(M, rng):
    x = rng.normal(0, 3, (M, 41)).astype(np.float32)
    q, scale = quantize_columns(rng.normal(0, 1, (41, 37)).astype(np.float32))
    b = rng.normal(0, 1, 37).astype(np.float32)
    ref = _reference.pack_dense_int8(q, scale)
    packed = _numba.pack_dense_int8(q, scale)
    assert packed.panels.dtype == np.int8
    expected = _reference.dense_clip(x, ref, b, 0.0, 2.0)
    np.testing.assert_allclose(
        _numba.dense_clip(x, packed, b, 0.0, 2.0), expected, rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(
        _numba.dense(x, packed, b), _reference.dense(x, ref, b), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(
        _reference.dense(x, ref, b), x @ dequantize(q, scale) + b, rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("stride", [(1, 1), (2, 2), (3, 1)])
def test_int8_conv_kernels_match_reference(stride, rng):
    xp = rng.normal(0, 1, (13, 3, 2, 17)).astype(np.float32)
    q, scale = quantize_columns(rng.normal(0, 0.5, (4, 2, 5, 3)), axis=0)
    b = rng.normal(0, 0.5, 4).astype(np.float32)
    args = (b, (5, 3), stride, -1.0, 1.5)
    expected = _reference.conv_clip(
        xp, _reference.pack_conv_int8(q, scale, stride), *args
    )
    W = dequantize(q, scale, axis=0)
    np.testing.assert_allclose(
        expected, _reference.conv_clip(xp, W, *args), rtol=1e-5, atol=1e-5
    )
    got = _numba.conv_clip(xp, _numba.pack_conv_int8(q, scale, stride), *args)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


# -- the int8 network ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["deepspeech", "ds2", "ds2-stream", "ds2-stream-lstm"])
def test_int8_network_numba_matches_reference_and_float(name, rng):
    network = _network(ALL[name], rng)
    features, lengths = _batch(rng, [37, 20, 29], T=40)
    ref = InferenceNetwork(network, "numpy", weights="int8")
    compiled = InferenceNetwork(network, "numba", weights="int8")
    assert ref.weights == compiled.weights == "int8"
    expected, out_lengths = ref.forward(features, lengths)
    got, got_lengths = compiled.forward(features, lengths)
    np.testing.assert_array_equal(got_lengths, out_lengths)
    np.testing.assert_allclose(got, expected, rtol=2e-4, atol=2e-5)
    # int8 weights move the logits by a small part of their range, not more
    float_logits, _ = InferenceNetwork(network, "numpy").forward(features, lengths)
    spread = np.abs(float_logits).max()
    error = np.abs(expected - float_logits).max()
    assert 0 < error < 0.05 * spread
    # a QuantizedNetwork runs int8 without being asked
    assert InferenceNetwork(quantize_network(network), "numpy").weights == "int8"


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("name", ["deepspeech", "ds2-stream"])
def test_int8_streaming_equals_offline(name, backend, rng):
    network = _network(ALL[name], rng)
    runtime = InferenceNetwork(network, backend, weights="int8")
    features, lengths = _batch(rng, [41])
    offline, _ = runtime.forward(features, lengths)
    streamed = _stream(runtime, features[:, 0], [3, 7, 0, 2, 5])
    np.testing.assert_allclose(streamed, offline[:, 0], rtol=2e-4, atol=2e-5)


def test_bad_weights_name(rng):
    with pytest.raises(ConfigError, match="weights"):
        InferenceNetwork(_network(ALL["deepspeech"], rng), "numpy", weights="int4")


# -- files -----------------------------------------------------------------------------


def _model_file(path, rng, config=None, n_input=26):
    config = config or ModelConfig(n_hidden=256, dropout=0.0)
    alphabet = Alphabet(list(" abcdefghijklmnopqrstuvwxyz'"))
    network = models.init(config, n_input, alphabet.n_classes, rng)
    features = FeatureConfig()
    modelfile.save(
        path, modelfile.ModelFile(network, features, alphabet, {"epochs": 1})
    )
    return network


def test_int8_file_is_small_and_loads_as_quantized(tmp_path, rng):
    source, target = tmp_path / "f32.npz", tmp_path / "int8.npz"
    network = _model_file(source, rng)
    quantize_file(source, target)
    ratio = target.stat().st_size / source.stat().st_size
    assert ratio <= 0.3, ratio
    loaded = modelfile.load(target)
    assert isinstance(loaded.network, QuantizedNetwork)
    assert "layer_4/W_hh" in loaded.network.quantized
    assert "layer_1/b" not in loaded.network.quantized
    assert (
        loaded.training["quantized_from"] == "f32.npz"
        and loaded.training["epochs"] == 1
    )
    for name, value in network.params.items():
        back = loaded.network.params[name]
        assert back.dtype == np.float32
        if name in loaded.network.quantized:
            q, scale = quantize_columns(value)
            np.testing.assert_array_equal(back, dequantize(q, scale))
        else:
            np.testing.assert_array_equal(back, value)
    with np.load(target, allow_pickle=False) as archive:
        meta = json.loads(archive[modelfile.META_KEY].tobytes())
        assert archive["params/layer_4/W_hh"].dtype == np.int8
        assert archive["scales/layer_4/W_hh"].dtype == np.float32
    assert meta["format_version"] == 2
    assert meta["weights"]["scheme"] == "int8-symmetric-per-output-channel"
    # saving the loaded int8 model again writes the same codes
    again = tmp_path / "again.npz"
    modelfile.save(again, loaded)
    with np.load(again) as a, np.load(target) as b:
        np.testing.assert_array_equal(
            a["params/layer_4/W_hh"], b["params/layer_4/W_hh"]
        )


def test_float_only_reader_refuses_int8_file(tmp_path, rng):
    source, target = tmp_path / "f32.npz", tmp_path / "int8.npz"
    _model_file(source, rng, ModelConfig(n_hidden=16, dropout=0.0))
    quantize_file(source, target)
    # a reader of version 1 (float weights only) refuses it instead of reading codes
    with pytest.raises(ModelFileError, match="newer npspeech"):
        modelfile.load_archive(
            target,
            format_name=modelfile.FORMAT_NAME,
            format_version=1,
            what="model file",
        )


def _rewrite(path, change):
    with np.load(path, allow_pickle=False) as archive:
        entries = {name: archive[name] for name in archive.files}
    meta = json.loads(entries.pop(modelfile.META_KEY).tobytes())
    entries.pop(modelfile.HASH_KEY)
    change(meta, entries)
    meta.pop("arrays")
    modelfile.save_archive(path, meta, entries)


def test_damaged_int8_metadata_is_named(tmp_path, rng):
    source, target = tmp_path / "f32.npz", tmp_path / "int8.npz"
    _model_file(source, rng, ModelConfig(n_hidden=16, dropout=0.0))
    quantize_file(source, target)

    def scheme(meta, entries):
        meta["weights"]["scheme"] = "int4-blocks"

    _rewrite(target, scheme)
    with pytest.raises(ModelFileError, match="int4-blocks"):
        modelfile.load(target)
    quantize_file(source, target, overwrite=True)

    def scales(meta, entries):
        del entries["scales/layer_2/W"]

    _rewrite(target, scales)
    with pytest.raises(ModelFileError, match="layer_2/W"):
        modelfile.load(target)

    def undeclared(meta, entries):  # int8 codes with no quantisation recorded
        del meta["weights"]

    quantize_file(source, target, overwrite=True)
    _rewrite(target, undeclared)
    with pytest.raises(ModelFileError, match="int8"):
        modelfile.load(target)


def test_quantize_file_refusals(tmp_path, rng):
    source, target = tmp_path / "f32.npz", tmp_path / "int8.npz"
    _model_file(source, rng, ModelConfig(n_hidden=16, dropout=0.0))
    target.write_bytes(b"keep me")
    with pytest.raises(ModelFileError, match="--overwrite"):
        quantize_file(source, target)
    assert target.read_bytes() == b"keep me"
    quantize_file(source, target, overwrite=True)
    with pytest.raises(ModelFileError, match="already int8"):
        quantize_file(target, tmp_path / "twice.npz")
    with pytest.raises(ModelFileError, match="replace the model"):
        quantize_file(source, source, overwrite=True)
    with pytest.raises(ModelFileError, match="not found"):
        quantize_file(tmp_path / "missing.npz", tmp_path / "x.npz")


def test_cli_quantize_and_decode_with_int8_model(tmp_path, rng, capsys):
    from npspeech.api import Model
    from npspeech.cli import main

    source, target = tmp_path / "f32.npz", tmp_path / "int8.npz"
    _model_file(source, rng, ModelConfig(n_hidden=32, dropout=0.0))
    assert main(["quantize", str(source), "-o", str(target)]) == 0
    assert "int8.npz" in capsys.readouterr().out
    assert main(["quantize", str(source), "-o", str(target)]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert main(["quantize", str(source), "-o", str(target), "--overwrite"]) == 0
    model = Model(target, backend="numpy")
    assert model.inference_network.weights == "int8"
    signal = rng.normal(0, 0.1, 16000).astype(np.float32)
    assert isinstance(model.stt(signal, sample_rate=16000), str)
    assert Model(source, backend="numpy").inference_network.weights == "float32"


def test_version_1_float_files_still_load(tmp_path, rng):
    path = tmp_path / "v1.npz"
    network = _model_file(path, rng, ModelConfig(n_hidden=16, dropout=0.0))

    def as_version_1(meta, entries):
        meta["format_version"] = 1

    _rewrite(path, as_version_1)
    loaded = modelfile.load(path)
    assert type(loaded.network) is models.Network
    for name, value in network.params.items():
        np.testing.assert_array_equal(loaded.network.params[name], value)
    # a version-1 file claiming int8 weights is not an int8 model: its int8 arrays
    # are refused rather than read as weights
    source, target = tmp_path / "f32.npz", tmp_path / "int8.npz"
    _model_file(source, rng, ModelConfig(n_hidden=16, dropout=0.0))
    quantize_file(source, target)
    _rewrite(target, as_version_1)
    with pytest.raises(ModelFileError, match="int8"):
        modelfile.load(target)
