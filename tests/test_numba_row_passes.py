"""The numba backend's passes around a dense product: ``add_row`` (the bias) and
``column_sums`` (its gradient), serial and threaded, against NumPy."""

from __future__ import annotations

import numba
import numpy as np
import pytest

layers = pytest.importorskip("npspeech.backends.numba_cpu.layers")

# (N, F): empty, one row, odd sizes, and one past the threaded threshold
SHAPES = [(0, 5), (1, 7), (37, 13), (layers.PARALLEL_MIN_WORK // 64 + 3, 64)]


@pytest.fixture(params=[1, 2, 3], ids=lambda n: f"{n} threads")
def threads(request):
    previous = numba.get_num_threads()
    numba.set_num_threads(min(request.param, numba.config.NUMBA_NUM_THREADS))
    yield numba.get_num_threads()
    numba.set_num_threads(previous)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_add_row_adds_the_row_to_every_row_in_place(rng, shape, dtype, threads):
    y = rng.standard_normal(shape).astype(dtype)
    row = rng.standard_normal(shape[1]).astype(dtype)
    want = y + row
    got = layers.add_row(y, row)
    assert got is y
    np.testing.assert_array_equal(got, want)  # one rounding per element, as NumPy


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_column_sums_match_the_exact_sums(rng, shape, dtype, threads):
    x = rng.standard_normal(shape).astype(dtype)
    got = layers.column_sums(x)
    exact = x.astype(np.float64).sum(axis=0)
    assert got.dtype == dtype and got.shape == (shape[1],)
    # summed in order within each part: N roundings of at most the running |sum|
    bound = shape[0] * np.finfo(dtype).eps * np.abs(x).astype(np.float64).sum(axis=0)
    assert np.all(np.abs(got - exact) <= bound)
    if shape[0] == 0:
        np.testing.assert_array_equal(got, 0.0)


def test_column_sums_of_one_part_equal_numpys(rng):
    # below the threshold one part adds the rows in NumPy's order: the same bits
    x = rng.standard_normal((37, 13)).astype(np.float32)
    np.testing.assert_array_equal(layers.column_sums(x), x.sum(axis=0))
