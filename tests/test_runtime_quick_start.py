"""The quick start: a network left to the default backend runs short inputs on the
NumPy reference, and a short decode never imports Numba, until the process has run
enough work to pay for the compiled kernels (``npspeech/runtime/_quick_start.py``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_runtime import ALL, ATOL, RTOL, _batch, _network

from npspeech.runtime import InferenceNetwork, _numba, _quick_start, _warmup

MODEL = Path(__file__).parent / "data" / "models" / "kathleen_fsdd_160.npz"


@pytest.fixture
def budget(monkeypatch):
    """A fresh quick-start budget; the cache reported warm, warm-ups recorded."""
    started = []
    monkeypatch.setattr(_quick_start, "_spent", 0.0)
    monkeypatch.setattr(_quick_start, "_closed", False)
    monkeypatch.setattr(_quick_start, "BUDGET", _quick_start.BUDGET)  # tests set it
    monkeypatch.setattr(_numba, "kernels_cached", lambda *key: True)
    monkeypatch.setattr(_warmup, "start", lambda *key: started.append(key) or True)
    monkeypatch.setenv("NPSPEECH_BACKEND", "numba")
    return started


@pytest.mark.parametrize("name", ["deepspeech", "ds2", "ds2-stream"])
def test_reference_within_the_budget_then_compiled_for_good(name, budget, rng):
    network = _network(ALL[name], rng)
    runtime = InferenceNetwork(network)
    compiled = InferenceNetwork(network, backend="numba")
    features, lengths = _batch(rng, [30, 17])
    work = features.shape[0] * features.shape[1] * runtime._n_weights
    _quick_start.BUDGET = 2.5 * work  # monkeypatched attributes are restored
    for _ in range(2):
        assert runtime.reference_only(features.shape[0] * features.shape[1])
        logits, out_lengths = runtime.forward(features, lengths)
        assert runtime._kernels is None and runtime._reference.backend == "numpy"
        expected, expected_lengths = compiled.forward(features, lengths)
        np.testing.assert_array_equal(out_lengths, expected_lengths)
        np.testing.assert_allclose(logits, expected, rtol=RTOL, atol=ATOL)
    # the third input would pass the budget: compiled kernels from now on
    assert not runtime.reference_only(features.shape[0] * features.shape[1])
    logits, _ = runtime.forward(features, lengths)
    assert runtime._kernels is not None and not runtime._cold
    np.testing.assert_allclose(logits, expected, rtol=RTOL, atol=ATOL)
    # and for every network of the process, however short its input
    other = InferenceNetwork(network)
    assert not other.reference_only(1)
    other.forward(*_batch(rng, [1]))
    assert other._kernels is not None and budget == []


def test_long_input_skips_the_reference(budget, rng):
    runtime = InferenceNetwork(_network(ALL["deepspeech"], rng))
    features, lengths = _batch(rng, [40])
    _quick_start.BUDGET = 39 * runtime._n_weights
    assert not runtime.reference_only(40)
    runtime.forward(features, lengths)
    assert runtime._kernels is not None and runtime._reference is None


def test_stream_carries_its_state_from_reference_to_kernels(budget, rng):
    network = _network(ALL["ds2-stream"], rng)
    runtime = InferenceNetwork(network)
    _quick_start.BUDGET = 20 * runtime._n_weights
    features, lengths = _batch(rng, [40])
    expected, _ = InferenceNetwork(network, backend="numba").forward(features, lengths)
    state = runtime.new_state()  # before any weights are packed for the kernels
    first = runtime.forward_chunk(features[:15, 0], state)
    assert runtime._kernels is None
    rest = runtime.forward_chunk(features[15:, 0], state, final=True)  # past it
    assert runtime._kernels is not None
    np.testing.assert_allclose(
        np.concatenate([first, rest]), expected[:, 0], rtol=RTOL, atol=ATOL
    )


def test_explicit_backends_never_take_the_quick_start(budget, rng):
    network = _network(ALL["deepspeech"], rng)
    for backend in ("numpy", "numba"):
        runtime = InferenceNetwork(network, backend=backend)
        assert not runtime.reference_only(1)
        runtime.forward(*_batch(rng, [5]))
        assert runtime._reference is None
    assert _quick_start._spent == 0.0


def test_model_steps_follow_the_network(budget, data_dir):
    """Features, network and log-softmax on NumPy during the quick start agree with
    the compiled path on real speech."""
    from npspeech.inference import Model

    audio = data_dir / "kathleen_arctic" / "flac" / "arctic_a0010_1592748378.flac"
    quick = Model.load(MODEL)
    feats = quick.compute_features(audio)
    assert quick.inference_network._kernels is None
    log_probs = quick.utterance_log_probs(feats)
    assert quick.inference_network._kernels is None  # all of it on the reference
    compiled = Model.load(MODEL, backend="numba")
    expected = compiled.utterance_log_probs(compiled.compute_features(audio))
    np.testing.assert_allclose(log_probs, expected, rtol=1e-4, atol=1e-4)
    assert quick.decoder.decode_text(log_probs) == compiled.decoder.decode_text(
        expected
    )


def _stream_crossing_the_switch(model, signal, chunk):
    """Feed ``signal`` to a new stream of ``model`` in chunks of ``chunk`` samples;
    returns its final text, the log-probabilities its decoder received (T_out, V)
    and, per chunk that reached the decoder, (the features' backend, whether the
    network ran on the reference)."""
    stream = model.create_stream()
    fed, steps = [], []
    feed = stream._decoder.feed

    def record(log_probs):
        fed.append(log_probs)
        reference = model.inference_network._kernels is None
        steps.append((stream._features.backend, reference))
        feed(log_probs)

    stream._decoder.feed = record
    for start in range(0, signal.shape[0], chunk):
        stream.feed_audio_content(signal[start : start + chunk])
    return stream.finish_stream(), np.concatenate(fed), steps


def test_stream_crossing_the_budget_equals_the_offline_decode(budget, data_dir):
    """Features, network and log-softmax on NumPy while the budget lasts, all on the
    compiled kernels after it, within one stream: the offline result still."""
    import npspeech
    from npspeech.audio import load

    audio = data_dir / "kathleen_arctic" / "flac" / "arctic_a0010_1592748378.flac"
    quick = npspeech.Model(MODEL)
    signal = load(audio, sample_rate=quick.sample_rate)
    frames = signal.shape[0] // quick.features.step_samples  # ~340
    _quick_start.BUDGET = frames // 3 * quick.inference_network._n_weights
    text, log_probs, steps = _stream_crossing_the_switch(quick, signal, 1234)
    # the switch happens inside the stream, features and network together
    assert steps[0] == ("numpy", True) and steps[-1] == (None, False)
    switch = steps.index((None, False))
    assert set(steps[:switch]) == {("numpy", True)}
    assert set(steps[switch:]) == {(None, False)}
    compiled = npspeech.Model(MODEL, backend="numba")
    expected = compiled.utterance_log_probs(compiled.compute_features(signal))
    np.testing.assert_allclose(log_probs, expected, rtol=1e-4, atol=1e-4)
    assert text == compiled.stt(signal) and len(text.split()) >= 5


# A fresh interpreter: a short decode's transcript, and whether Numba was imported.
FRESH = """
import json, sys
{run}
print(json.dumps({{"numba": sorted(m for m in sys.modules if m.split(".")[0] ==
    "numba" or m.endswith("numba_cpu") or m.endswith("_numba"))}}))
"""
CLI = """
from npspeech import cli
assert cli.main(["decode", "--model", {model!r}, {audio!r}]) == 0
"""
API = """
import npspeech
print(npspeech.Model({model!r}).stt({audio!r}))
"""
CLI_STREAM = """
from npspeech import cli
assert cli.main(["decode", "--model", {model!r}, "--stream", "1234", {audio!r}]) == 0
"""
STREAM = """
import npspeech
from npspeech.audio import load
model = npspeech.Model({model!r})
signal = load({audio!r}, sample_rate=model.sample_rate)
stream = model.create_stream()
for start in range(0, signal.shape[0], 1234):
    stream.feed_audio_content(signal[start : start + 1234])
text = stream.finish_stream()
assert text == model.stt(signal), (text, model.stt(signal))
print(text)
"""


@pytest.mark.parametrize(
    "run",
    [CLI, API, CLI_STREAM, STREAM],
    ids=["decode", "stt", "decode-stream", "stream"],
)
def test_short_decode_does_not_import_numba(run, data_dir, tmp_path):
    audio = data_dir / "kathleen_arctic" / "flac" / "arctic_a0010_1592748378.flac"
    script = FRESH.format(run=run.format(model=str(MODEL), audio=str(audio)))
    environment = dict(os.environ, NPSPEECH_BACKEND="numba")
    environment.pop("NUMBA_DISABLE_JIT", None)
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    *transcript, modules = result.stdout.strip().splitlines()
    assert json.loads(modules) == {"numba": []}
    assert "".join(transcript).strip()  # something was transcribed
