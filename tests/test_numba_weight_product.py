"""The numba backend's weight-gradient product ``a.T @ b`` against the exact product:
register tiles of 8, 4, 2 and 1 rows, column tails left to BLAS, frame blocks with
padding, frames split over threads, and the shapes that go to BLAS whole."""

from __future__ import annotations

import numpy as np
import pytest

weight_product = pytest.importorskip("npspeech.backends.numba_cpu.weight_product")


def _assert_close_to_exact(got, a, b):
    """Any order of summation is within K eps (|a|.T @ |b|) of the exact product."""
    K = a.shape[0]
    exact = a.astype(np.float64).T @ b.astype(np.float64)
    bound = K * np.finfo(a.dtype).eps * (np.abs(a).astype(np.float64).T @ np.abs(b))
    error = np.abs(got.astype(np.float64) - exact)
    assert np.all(error <= bound), f"error {error.max():.3g} > bound {bound.max():.3g}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "K, M, N",
    [
        (64, 8, 32),  # one tile, one panel, no padding
        (5, 3, 33),  # K not a multiple of 4; M below a tile; one column past a panel
        (1, 1, 32),
        (37, 15, 70),  # 8 + 4 + 2 + 1 rows; two panels and a tail
        (300, 494, 64),  # DeepSpeech's first layer: 61 tiles and 6 rows
        (1030, 9, 96),  # 5 frame blocks (256), the last one padded
        (2050, 21, 100),  # frames split over threads, each with a padded last block
    ],
)
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_matches_exact_product(rng, dtype, K, M, N, threads):
    a = rng.standard_normal((K, M)).astype(dtype)
    b = rng.standard_normal((K, N)).astype(dtype)
    got = weight_product.transposed_product(a, b, threads)
    assert got.shape == (M, N) and got.dtype == dtype and got.flags.c_contiguous
    _assert_close_to_exact(got, a, b)


def test_frames_split_over_threads_sum_alike(rng):
    """Three threads' partial products, summed, are as close to the exact product
    as one thread's whole one."""
    a = rng.standard_normal((3000, 40)).astype(np.float32)
    b = rng.standard_normal((3000, 64)).astype(np.float32)
    one = weight_product.transposed_product(a, b, 1)
    three = weight_product.transposed_product(a, b, 3)
    _assert_close_to_exact(one, a, b)
    _assert_close_to_exact(three, a, b)


def test_strided_operands(rng):
    """Views (a column slice, a transposed array) give the same product as copies."""
    wide = rng.standard_normal((700, 90))
    a = wide[:, 5:45]  # (700, 40), rows strided
    b = np.asfortranarray(rng.standard_normal((700, 48)))
    got = weight_product.transposed_product(a, b, 2)
    np.testing.assert_allclose(
        got, weight_product.transposed_product(a.copy(), b.copy(), 2), rtol=0, atol=0
    )
    _assert_close_to_exact(got, a, b)


@pytest.mark.parametrize(
    "a_shape, b_shape, dtype",
    [
        ((50, 7), (50, 29), np.float32),  # no whole panel: a 29-symbol output layer
        ((8, 1024), (8, 1024), np.float32),  # 4 MiB result: past MAX_RESULT_BYTES
        ((20, 6), (20, 40), np.int64),  # not a float
        ((0, 6), (0, 40), np.float32),  # no frames
    ],
)
def test_other_shapes_are_numpys_product(rng, a_shape, b_shape, dtype):
    a = (rng.standard_normal(a_shape) * 10).astype(dtype)
    b = (rng.standard_normal(b_shape) * 10).astype(dtype)
    got = weight_product.transposed_product(a, b, 2)
    np.testing.assert_array_equal(got, a.T @ b)
