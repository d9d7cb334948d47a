"""Flush-to-zero around training steps (npspeech.fpenv)."""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit, prange

from npspeech import fpenv

pytestmark = pytest.mark.skipif(
    not fpenv.SUPPORTED, reason="no flush-to-zero switch on this processor"
)

TINY = np.float32(1e-30)  # normal; TINY * SMALL = 1e-40 is subnormal in float32
SMALL = np.float32(1e-10)


@njit(parallel=True)
def _products(a, b, out):  # pragma: no cover - jit
    for i in prange(a.size):
        out[i] = a[i] * b[i]


def _all_products(n=4096):
    a = np.full(n, TINY, np.float32)
    b = np.full(n, SMALL, np.float32)
    out = np.empty_like(a)
    _products(a, b, out)  # split over Numba's worker threads
    return a * b, out  # NumPy's in this thread, Numba's


def test_flushing_zeroes_subnormal_results_here_and_in_numba_workers():
    here, workers = _all_products()
    assert here[0] != 0 and np.all(workers != 0)  # off by default
    with fpenv.flushing():
        here, workers = _all_products()
        assert here[0] == 0 and np.all(workers == 0)
        # DAZ: a subnormal input reads as zero too
        subnormal = np.frombuffer(np.uint32(1).tobytes(), np.float32)  # 1.4e-45
        assert (subnormal * np.float32(2.0))[0] == 0
        # normal numbers are untouched
        assert np.float32(1e-20) * np.float32(1e-10) == np.float32(1e-30)
    here, workers = _all_products()
    assert here[0] != 0 and np.all(workers != 0)  # the previous setting is back


def test_nested_flushing_restores_the_outer_setting():
    with fpenv.flushing():
        with fpenv.flushing(False):
            here, _ = _all_products()
            assert here[0] != 0
        here, _ = _all_products()
        assert here[0] == 0
    assert fpenv.flush_subnormals(False) is False
