"""The array pool (npspeech.memory, npspeech._ext.array_pool)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from npspeech import memory

pool = pytest.importorskip("npspeech._ext.array_pool")

BIG = (1024, 1024)  # 4 MiB of float32: pooled; 1 MiB and up is


def _handler_name(array):
    try:  # NumPy 2
        from numpy._core.multiarray import get_handler_name
    except ImportError:  # NumPy 1.x
        from numpy.core.multiarray import get_handler_name
    return get_handler_name(array)


def test_large_arrays_reuse_freed_blocks_and_zeros_stay_zero():
    memory.release_pool()
    with memory.pooled_arrays():
        garbage = np.full(BIG, 7.5, np.float32)
        assert _handler_name(garbage) == "npspeech_array_pool"
        del garbage  # its block goes to the pool, still full of 7.5
        before = memory.pool_stats()
        assert before["cached_bytes"] >= 4 * 2**20
        zeros = np.zeros(BIG, np.float32)  # same size class: the cached block, cleared
        assert memory.pool_stats()["hits"] == before["hits"] + 1
        assert not zeros.any()
        again = np.ones((1000, 1030), np.float32)  # a nearby size shares the class
        assert np.all(again == 1.0)
        small = np.zeros(10)  # small arrays go straight to malloc
        assert not small.any()
    outside = np.empty(BIG, np.float32)
    assert _handler_name(outside) != "npspeech_array_pool"


def test_arrays_outlive_the_block_and_may_be_freed_in_other_threads():
    with memory.pooled_arrays():
        kept = [np.arange(2**18, dtype=np.float64) * k for k in range(4)]
    for k, array in enumerate(kept):
        np.testing.assert_array_equal(array, np.arange(2**18) * k)
    worker = threading.Thread(target=kept.clear)
    worker.start()
    worker.join()
    with memory.pooled_arrays():
        reused = np.zeros(2**18, np.float64)
    assert not reused.any()


def test_resize_keeps_the_data():
    with memory.pooled_arrays():
        array = np.arange(300_000, dtype=np.int64)
        array.resize(600_000, refcheck=False)  # realloc through the handler
        np.testing.assert_array_equal(array[:300_000], np.arange(300_000))
        array.resize(10, refcheck=False)
        np.testing.assert_array_equal(array, np.arange(10))


def test_the_limit_bounds_what_is_kept_and_release_frees_it():
    memory.release_pool()
    with memory.pooled_arrays(limit_bytes=5 * 2**20):
        blocks = [np.empty(BIG, np.float32) for _ in range(3)]
        del blocks  # 12 MiB freed, at most 5 MiB kept
        assert memory.pool_stats()["cached_bytes"] <= 5 * 2**20
    memory.release_pool()
    assert memory.pool_stats()["cached_bytes"] == 0


def test_without_the_extension_the_block_runs_unchanged(monkeypatch):
    monkeypatch.setattr(memory, "_extension", lambda: None)
    with memory.pooled_arrays():
        array = np.zeros(BIG, np.float32)
    assert _handler_name(array) != "npspeech_array_pool"
    assert memory.pool_stats() == {"cached_bytes": 0, "hits": 0, "misses": 0}
