"""The first run: while the compiled kernels are not in Numba's cache, a network left
to the default backend runs short inputs on the NumPy reference and compiles the
kernels for later runs in a background process (``npspeech/runtime/network.py``).
The quick-start budget is spent here, so that the cache is consulted (see
``test_runtime_quick_start.py`` for the budget)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest
from test_runtime import ALL, _batch, _network

from npspeech.runtime import InferenceNetwork, _numba, _quick_start, _warmup
from npspeech.runtime import network as runtime_network


@pytest.fixture
def cold(monkeypatch):
    """Kernels reported missing from the cache; warm-ups recorded, not started."""
    started = []
    state = {"cached": False}
    monkeypatch.setattr(_numba, "kernels_cached", lambda *key: state["cached"])
    monkeypatch.setattr(_warmup, "start", lambda *key: started.append(key) or True)
    monkeypatch.setenv("NPSPEECH_BACKEND", "numba")
    monkeypatch.setattr(_quick_start, "_closed", True)  # the budget is spent
    return started, state


@pytest.mark.parametrize("weights", ["float32", "int8"])
@pytest.mark.parametrize("name", ["deepspeech", "ds2-stream"])
def test_cold_short_input_runs_on_reference(name, weights, cold, rng):
    started, _ = cold
    network = _network(ALL[name], rng)
    runtime = InferenceNetwork(network, weights=weights)
    features, lengths = _batch(rng, [30, 17])
    logits, out_lengths = runtime.forward(features, lengths)
    assert runtime._reference is not None and runtime._reference.backend == "numpy"
    kind = ALL[name].rnn_kind if name != "deepspeech" else "lstm"
    assert started == [(ALL[name].architecture, kind, weights)]
    compiled = InferenceNetwork(network, backend="numba", weights=weights)
    expected, expected_lengths = compiled.forward(features, lengths)
    np.testing.assert_array_equal(out_lengths, expected_lengths)
    # an int8 model runs its (dequantised) weights in float on the reference
    tolerance = 0.05 * np.abs(expected).max() if weights == "int8" else 2e-5
    np.testing.assert_allclose(logits, expected, rtol=2e-4, atol=tolerance)
    runtime.forward(features, lengths)
    assert len(started) == 1  # one warm-up per network


def test_cold_long_input_compiles_here(cold, rng, monkeypatch):
    started, _ = cold
    monkeypatch.setattr(runtime_network, "COLD_REFERENCE_WORK", 10)
    runtime = InferenceNetwork(_network(ALL["deepspeech"], rng))
    features, lengths = _batch(rng, [30])
    runtime.forward(features, lengths)
    assert runtime._reference is None and not runtime._cold and started == []


def test_stream_switches_to_compiled_kernels_when_they_appear(cold, rng, monkeypatch):
    started, state = cold
    monkeypatch.setattr(runtime_network, "_COLD_CHECK_SECONDS", 0.0)
    network = _network(ALL["deepspeech"], rng)
    runtime = InferenceNetwork(network)
    features, lengths = _batch(rng, [40])
    expected, _ = InferenceNetwork(network, backend="numba").forward(features, lengths)
    stream = runtime.new_state()
    first = runtime.forward_chunk(features[:15, 0], stream)
    assert runtime._reference is not None and runtime._cold
    state["cached"] = True  # the background compile has finished
    rest = runtime.forward_chunk(features[15:, 0], stream, final=True)
    assert not runtime._cold and runtime._reference is None
    np.testing.assert_allclose(
        np.concatenate([first, rest]), expected[:, 0], rtol=2e-4, atol=2e-5
    )
    assert stream.frames_in == 40 and stream.frames_out == 40


def test_explicit_backend_never_falls_back(cold, rng):
    runtime = InferenceNetwork(_network(ALL["deepspeech"], rng), backend="numba")
    runtime.forward(*_batch(rng, [5]))
    assert runtime._reference is None and cold[0] == []


def test_kernels_cached_after_a_run(rng):
    for name in ("deepspeech", "ds2-stream"):
        config = ALL[name]
        for weights in ("float32", "int8"):
            runtime = InferenceNetwork(_network(config, rng), "numba", weights=weights)
            runtime.forward(*_batch(rng, [5]))
            kind = "lstm" if name == "deepspeech" else config.rnn_kind
            assert _numba.kernels_cached(config.architecture, kind, weights)


def test_warmup_lock_allows_one_at_a_time(tmp_path, monkeypatch):
    launched = []

    class Popen:
        def __init__(self, command, **kwargs):
            launched.append(command)
            assert kwargs["start_new_session"]

    monkeypatch.setattr(_warmup.subprocess, "Popen", Popen)
    monkeypatch.setattr(_warmup.tempfile, "gettempdir", lambda: str(tmp_path))
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "cache"))
    assert _warmup.start("deepspeech", "lstm", "int8")
    assert not _warmup.start("deepspeech", "lstm", "int8")  # one is running
    assert _warmup.start("deepspeech", "lstm", "float32")  # another kernel set
    lock = _warmup.lock_path("deepspeech", "lstm", "int8")
    assert launched[0][-1] == str(lock) and lock.exists()
    old = time.time() - _warmup.STALE_SECONDS - 1
    os.utime(lock, (old, old))  # left over from a killed warm-up
    assert _warmup.start("deepspeech", "lstm", "int8")


def test_warmup_main_compiles_and_releases_the_lock(tmp_path):
    lock = tmp_path / "lock"
    lock.touch()
    assert _warmup.main(["ds2-stream", "rnn", "int8", str(lock)]) == 0
    assert not lock.exists()
    assert _numba.kernels_cached("ds2-stream", "rnn", "int8")


@pytest.mark.slow
def test_cold_cache_end_to_end(tmp_path):
    """A fresh process with an empty cache: reference now, compiled kernels later."""
    script = (
        "import numpy as np, sys\n"
        f"sys.path.insert(0, {os.path.dirname(__file__)!r})\n"
        "from npspeech.runtime import InferenceNetwork, _numba, _quick_start\n"
        "_quick_start.BUDGET = 0  # past the quick start: the cache decides\n"
        "from test_runtime import ALL, _batch, _network\n"
        "rng = np.random.default_rng(0)\n"
        "r = InferenceNetwork(_network(ALL['deepspeech'], rng))\n"
        "r.forward(*_batch(rng, [20]))\n"
        "print('reference' if r._reference is not None else 'compiled')\n"
    )
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), NPSPEECH_BACKEND="numba")
    env.pop("NUMBA_DISABLE_JIT", None)
    run = [sys.executable, "-c", script]
    first = subprocess.run(run, env=env, capture_output=True, text=True, check=True)
    assert first.stdout.strip() == "reference"
    deadline = time.time() + 300
    while time.time() < deadline:
        probe = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True
        )
        if probe.stdout.strip() == "compiled":
            return
        time.sleep(5)
    pytest.fail("the background compile did not fill the cache within 300 s")


def test_kernels_cached_survives_other_numba_internals(monkeypatch):
    class Dispatcher:  # a dispatcher whose cache lacks load_overload
        _cache = object()
        overloads: dict = {}

    monkeypatch.setattr(
        _numba, "_kernel_calls", lambda *key: [(Dispatcher(), (np.zeros(1),))]
    )
    # the check cannot tell: the kernels run (compiling if they must), as before it
    assert _numba.kernels_cached("deepspeech", "lstm", "float32")
