"""The compiled inference kernels against their NumPy reference, state carried across
chunks included."""

from __future__ import annotations

import numpy as np
import pytest

from npspeech.runtime import _numba, _reference

GATES = {"lstm": 4, "gru": 3, "rnn": 1}


def _run(kernels, kind, xw, lengths, W_hh, bias, h, c):
    """One chunk through ``kernels``; returns y and the (copied) state after it."""
    h, c = h.copy(), c.copy()
    y = np.full((xw.shape[0], xw.shape[1], h.shape[1]), np.nan, dtype=np.float32)
    packed = kernels.pack_recurrent(W_hh)
    if kind == "lstm":
        kernels.lstm_sequence(xw, lengths, packed, bias, h, c, y)
    elif kind == "gru":
        kernels.gru_sequence(xw, lengths, packed, bias, h, y)
    else:
        kernels.rnn_sequence(xw, lengths, packed, bias, h, np.float32(20.0), y)
    return y, h, c


@pytest.mark.parametrize("H", [5, 33])
@pytest.mark.parametrize("kind", list(GATES))
def test_recurrent_kernels_match_reference(kind, H, rng):
    G = GATES[kind]
    B, T = 5, 9
    scale = 3.0 if kind != "rnn" else 1.0  # saturate some gates
    xw = rng.normal(0, scale, (T, B, G * H)).astype(np.float32)
    W_hh = rng.normal(0, 1 / np.sqrt(H), (H, G * H)).astype(np.float32)
    bias = rng.normal(0, 0.5, G * H).astype(np.float32)
    h0 = rng.normal(0, 0.5, (B, H)).astype(np.float32)
    if kind == "rnn":
        h0 = np.abs(h0)
    c0 = rng.normal(0, 1, (B, H)).astype(np.float32)
    lengths = np.array([9, 0, 4, 9, 1])
    y_ref, h_ref, c_ref = _run(_reference, kind, xw, lengths, W_hh, bias, h0, c0)
    y, h, c = _run(_numba, kind, xw, lengths, W_hh, bias, h0, c0)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h, h_ref, rtol=1e-5, atol=1e-6)
    if kind == "lstm":
        np.testing.assert_allclose(c, c_ref, rtol=1e-5, atol=1e-6)
    # a sequence of zero length keeps its state; frames past a length are zero
    np.testing.assert_array_equal(h[1], h0[1])
    assert not y[4:, 2].any() and not y[:, 1].any()
    # the state carries: two chunks give what one does
    full = np.array([T] * B)
    y1, h1, c1 = _run(_numba, kind, xw[:4], full, W_hh, bias, h0, c0)
    y2, h2, c2 = _run(_numba, kind, xw[4:], full, W_hh, bias, h1, c1)
    y_all, h_all, c_all = _run(_reference, kind, xw, full, W_hh, bias, h0, c0)
    np.testing.assert_allclose(np.concatenate([y1, y2]), y_all, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h2, h_all, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c2, c_all, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("M", [1, 13, 64, 150])
def test_dense_kernels_match_reference(M, rng):
    # 150 rows: three blocks of rows, the last partial; 37 columns: a padded panel
    x = rng.normal(0, 3, (M, 41)).astype(np.float32)
    W = rng.normal(0, 1, (41, 37)).astype(np.float32)
    b = rng.normal(0, 1, 37).astype(np.float32)
    expected = _reference.dense_clip(x, _reference.pack_dense(W), b, 0.0, 2.0)
    if M > 1:
        assert expected.min() == 0.0 and expected.max() == 2.0  # both bounds hit
    packed = _numba.pack_dense(W)
    np.testing.assert_allclose(
        _numba.dense_clip(x, packed, b, 0.0, 2.0), expected, rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(
        _numba.dense(x, packed, b),
        _reference.dense(x, _reference.pack_dense(W), b),
        rtol=1e-5,
        atol=1e-5,
    )


@pytest.mark.parametrize("stride", [(1, 1), (2, 2), (1, 3), (3, 1), (5, 2)])
def test_conv_kernels_match_reference_and_training_conv(stride, rng):
    from npspeech.nn import conv

    xp = rng.normal(0, 1, (13, 3, 2, 17)).astype(np.float32)
    W = rng.normal(0, 0.5, (4, 2, 5, 3)).astype(np.float32)
    b = rng.normal(0, 0.5, 4).astype(np.float32)
    args = (b, (5, 3), stride, -1.0, 1.5)
    expected = _reference.conv_clip(xp, _reference.pack_conv(W, stride), *args)
    # the reference is the training layer's convolution, clipped
    unclipped, _ = conv.forward({"W": W, "b": b}, xp, np.full(3, 13), stride=stride)
    np.testing.assert_allclose(
        expected, np.clip(unclipped, -1.0, 1.5), rtol=1e-5, atol=1e-5
    )
    got = _numba.conv_clip(xp, _numba.pack_conv(W, stride), *args)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("weights", ["float32", "int8"])
@pytest.mark.parametrize("C_out, stride", [(32, (2, 2)), (24, (1, 1)), (40, (1, 2))])
def test_conv_kernel_skips_only_entries_no_output_reads(C_out, stride, weights, rng):
    # several panels, each holding one or more time offsets' columns (C_out of 24 and
    # 40 split offsets across panels), a batch of two: the kernel leaves the rows of
    # an offset that no output reads unwritten, and the outputs stay the reference's
    xp = rng.normal(0, 1, (23, 2, 3, 19)).astype(np.float32)
    W = rng.normal(0, 0.3, (C_out, 3, 7, 5)).astype(np.float32)
    b = rng.normal(0, 0.5, C_out).astype(np.float32)
    args = (b, (7, 5), stride, -1.0, 1.5)
    if weights == "int8":
        scale = (np.abs(W).max(axis=(1, 2, 3)) / 127).astype(np.float32)
        q = np.round(W / scale[:, None, None, None]).astype(np.int8)
        ours = _numba.pack_conv_int8(q, scale, stride)
        theirs = _reference.pack_conv_int8(q, scale, stride)
    else:
        ours, theirs = _numba.pack_conv(W, stride), _reference.pack_conv(W, stride)
    expected = _reference.conv_clip(xp, theirs, *args)
    got = _numba.conv_clip(xp, ours, *args)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_thread_pool_survives_fork(rng):
    """A process forked after the pool started (``--jobs`` workers) still runs the
    split kernels instead of waiting on threads it does not have."""
    import multiprocessing

    import numba

    if numba.config.NUMBA_NUM_THREADS < 2 or "fork" not in (
        multiprocessing.get_all_start_methods()
    ):
        pytest.skip("needs two Numba threads and fork")
    x = rng.normal(0, 1, (300, 20)).astype(np.float32)  # five row blocks
    W = rng.normal(0, 1, (20, 8)).astype(np.float32)
    b = np.zeros(8, dtype=np.float32)
    packed = _numba.pack_dense(W)
    before = numba.get_num_threads()
    numba.set_num_threads(2)
    try:
        expected = np.array(_numba.dense(x, packed, b))  # starts the pool
        context = multiprocessing.get_context("fork")
        with context.Pool(1) as pool:
            got = pool.apply_async(_dense_in_child, (x, packed, b)).get(timeout=60)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(got, expected)


def _dense_in_child(x, packed, b):
    import numba

    numba.set_num_threads(2)
    return np.array(_numba.dense(x, packed, b))
