"""Device-resident training with the cupy backend, and the GPU gradient exchange.

CPU half (default run): ``npspeech train`` with ``backend = "cupy"`` over the NumPy
stand-in for CuPy of :mod:`test_cupy_backend`, whose device arrays are a class of their
own; a recorder on the stand-in's upload (``asarray``) and download (``get``) paths
shows what crosses the host/device boundary in each step. GPU half (``-m gpu``): the
same on a real device, and a one-rank NCCL communicator through the MPI collective.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from test_cupy_backend import PACKAGE, DeviceArray, _forget_backend, fake_cupy

from npspeech import checkpoint, models, train
from npspeech.config import ModelConfig, TrainConfig
from npspeech.distributed import nccl
from npspeech.errors import ConfigError

# --- the stand-in, with a record of the transfers ------------------------------------


class Transfers:
    """Arrays uploaded (host -> device) and downloaded while ``on`` is set."""

    def __init__(self):
        self.on = False
        self.up: list[np.ndarray] = []
        self.down: list[tuple[int, ...]] = []

    def clear(self):
        self.up, self.down = [], []


def _recording_cupy(transfers):
    fake = fake_cupy()
    for name in ("asarray", "ascontiguousarray", "array"):
        convert = getattr(fake, name)

        def upload(value, *args, _convert=convert, **kwargs):
            if transfers.on and not isinstance(value, DeviceArray):
                transfers.up.append(np.asarray(value))
            return _convert(value, *args, **kwargs)

        setattr(fake, name, upload)
    return fake


@pytest.fixture
def transfers(monkeypatch):
    """The cupy backend over a recording stand-in; the record."""
    record = Transfers()
    _forget_backend()
    monkeypatch.setitem(sys.modules, "cupy", _recording_cupy(record))
    get = DeviceArray.get

    def download(self):
        if record.on:
            record.down.append(self.shape)
        return get(self)

    monkeypatch.setattr(DeviceArray, "get", download)
    importlib.import_module(PACKAGE)
    try:
        yield record
    finally:
        _forget_backend()


@pytest.fixture
def config(data_dir, tmp_path):
    """Three real utterances, one per batch, a tiny DeepSpeech model with dropout."""
    smoke = data_dir / "deepspeech_smoke"
    return TrainConfig(
        model=ModelConfig(n_hidden=12, n_context=2, dropout=0.1),
        train_csv=(str(smoke / "test.csv"),),
        dev_csv=(str(smoke / "ldc93s1.csv"),),
        alphabet=str(smoke / "alphabet.txt"),
        max_batch_size=1,
        epochs=2,
        learning_rate=3e-3,
        clip_norm=0.5,  # small, so that the device clipping is exercised
        seed=11,
        output_dir=str(tmp_path / "numpy"),
        progress=False,
        backend="numpy",
    )


def _losses(output_dir):
    lines = (Path(output_dir) / train.LOG_FILE).read_text().splitlines()
    steps = [json.loads(line) for line in lines]
    return np.array([s["loss"] for s in steps if s.get("event") == "step"])


def _checkpoint(output_dir):
    return checkpoint.load(Path(output_dir) / train.LAST_CHECKPOINT)


# --- a training run on the stand-in --------------------------------------------------


def test_device_training_keeps_the_state_on_the_device(transfers, config, tmp_path):
    """Weights and Adam moments stay device arrays between steps; per step the
    features are the one float array uploaded (the rest: lengths, targets, dropout
    masks) and only scalars come back."""
    config = dataclasses.replace(
        config, backend="cupy", output_dir=str(tmp_path / "cupy"), epochs=1
    )
    trainer = train.Trainer(config)
    assert trainer.device is not None
    step = trainer.train_step
    seen = []

    def recorded(batch, epoch, index):
        transfers.clear()
        transfers.on = True
        try:
            return step(batch, epoch, index)
        finally:
            transfers.on = False
            seen.append((batch.features.shape, transfers.up, transfers.down))
            state = trainer.state
            arrays = [*state.network.params.values()]
            arrays += [v for v in state.optimizer.values() if hasattr(v, "shape")]
            assert all(type(a) is DeviceArray for a in arrays)

    trainer.train_step = recorded
    result = trainer.run()
    assert result.steps == 3 and len(seen) == 3
    for index, (shape, up, down) in enumerate(seen):
        floats = [a.shape for a in up if a.dtype.kind == "f"]
        if index == 0:  # the first step moves the weights and the Adam state over
            assert len(floats) > 1 and shape in floats
        else:
            assert floats == [shape], f"step {index}: float uploads {floats}"
            assert all(a.dtype.kind in "iub" for a in up if a.shape != shape)
        assert all(int(np.prod(s)) <= 1 for s in down), f"step {index}: {down}"
    # files are host arrays, as a CPU run writes them
    saved = _checkpoint(config.output_dir)
    assert all(type(a) is np.ndarray for a in saved.network.params.values())


def test_device_training_matches_numpy_and_resumes_on_numba(
    transfers, config, tmp_path
):
    """The same loss curve and weights as the numpy backend from one seed; the
    checkpoint is a CPU checkpoint (same names, shapes, dtypes), and a run stopped on
    the device resumes on the numba backend."""
    reference = train.train(config)
    device_dir = str(tmp_path / "cupy")
    device = train.train(
        dataclasses.replace(config, backend="cupy", output_dir=device_dir)
    )
    want, got = _losses(reference.output_dir), _losses(device_dir)
    assert len(want) == 6 and np.all(np.isfinite(want)) and want[0] != want[-1]
    np.testing.assert_allclose(got, want, rtol=1e-5)
    first, second = _checkpoint(reference.output_dir), _checkpoint(device_dir)
    assert device.steps == reference.steps == second.step == 6
    for part in ("params", "state"):
        a, b = getattr(first.network, part), getattr(second.network, part)
        assert {k: (v.shape, v.dtype) for k, v in a.items()} == {
            k: (v.shape, v.dtype) for k, v in b.items()
        }
        for name in a:
            np.testing.assert_allclose(b[name], a[name], rtol=1e-4, atol=1e-6)
    assert set(first.optimizer) == set(second.optimizer)
    assert second.optimizer["step"] == 6
    # stop after 4 steps on the device, finish on the numba backend
    split_dir = str(tmp_path / "split")
    stopped = train.train(
        dataclasses.replace(config, backend="cupy", output_dir=split_dir), max_steps=4
    )
    assert stopped.stopped == "max_steps"
    resumed = train.train(
        dataclasses.replace(config, backend="numba", output_dir=split_dir), resume=True
    )
    assert resumed.steps == 6
    np.testing.assert_allclose(_losses(split_dir), want, rtol=1e-4)
    final = _checkpoint(split_dir)
    for name, value in first.network.params.items():
        np.testing.assert_allclose(
            final.network.params[name], value, rtol=1e-3, atol=1e-5
        )


# --- the device exchange: parts that run on a CPU ------------------------------------


def test_local_rank_from_the_launcher():
    assert nccl.local_rank(environ={"OMPI_COMM_WORLD_LOCAL_RANK": "3"}) == 3
    assert nccl.local_rank(environ={"SLURM_LOCALID": "1", "PMI_RANK": "9"}) == 1
    assert nccl.local_rank(environ={}) == 0


def test_one_gpu_per_rank():
    assert [nccl.device_for(r, 4) for r in range(4)] == [0, 1, 2, 3]
    with pytest.raises(ConfigError, match="no GPU of its own: the node has 2"):
        nccl.device_for(2, 2)
    with pytest.raises(ConfigError, match="no CUDA device"):
        nccl.device_for(0, 0)


def test_pack_and_unpack_round_trip(rng):
    arrays = [
        rng.standard_normal((3, 4)).astype(np.float32),
        rng.standard_normal(5).astype(np.float32),
        np.array([2.5, 1.0, 3.0], dtype=np.float32),
    ]
    buffer = nccl.pack(arrays, np)
    assert buffer.shape == (12 + 5 + 3,) and buffer.dtype == np.float32
    np.testing.assert_array_equal(buffer[12:17], arrays[1])
    again = nccl.pack(arrays, np, buffer)
    assert again is buffer  # reused when it fits
    for got, want in zip(nccl.unpack(buffer, arrays, np), arrays, strict=True):
        assert got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    assert nccl.pack([arrays[0], np.zeros(2, np.float64)], np).dtype == np.float64


def test_mpi_collective_sums_device_arrays_on_the_device(transfers, rng):
    """Device gradients and the host scalars of a step through one device buffer
    (a one-rank communicator: the sums are the inputs); device in, device out."""
    MPI = pytest.importorskip("mpi4py.MPI")
    from npspeech.distributed.mpi import MPICollective

    collective = MPICollective(MPI.COMM_SELF, timeout=30)
    grads = [rng.standard_normal(s).astype(np.float32) for s in ((3, 2), (4,))]
    scalars = np.array([1.5, 0.0, 2.0], dtype=np.float32)
    sums = collective.allreduce_sum(
        [g.view(DeviceArray) for g in grads] + [scalars], what="test"
    )
    assert collective._device.method in ("host", "cuda-aware-mpi")  # no NCCL here
    assert [type(s) for s in sums] == [DeviceArray, DeviceArray, np.ndarray]
    for got, want in zip(sums, [*grads, scalars], strict=True):
        np.testing.assert_array_equal(got, want)


# --- on a GPU ------------------------------------------------------------------------


@pytest.mark.gpu
def test_gpu_training_matches_numpy_and_resumes_on_numba(gpu_backend, config, tmp_path):
    reference = train.train(config)
    device_dir = str(tmp_path / "cupy")
    train.train(
        dataclasses.replace(config, backend="cupy", output_dir=device_dir), max_steps=4
    )
    resumed = train.train(
        dataclasses.replace(config, backend="numba", output_dir=device_dir), resume=True
    )
    assert resumed.steps == 6
    np.testing.assert_allclose(
        _losses(device_dir), _losses(reference.output_dir), rtol=1e-3
    )


@pytest.mark.gpu
def test_gpu_nccl_one_rank_allreduce(gpu_backend, rng):
    """A one-rank NCCL communicator: the exchange's calls run and return the sums."""
    import cupy

    MPI = pytest.importorskip("mpi4py.MPI")
    from npspeech.distributed.mpi import MPICollective

    collective = MPICollective(MPI.COMM_SELF, timeout=60)
    collective.select_device()
    grads = [cupy.asarray(rng.standard_normal(s).astype(np.float32)) for s in (7, 5)]
    scalars = np.array([1.0, 0.0, 3.0], dtype=np.float32)
    sums = collective.allreduce_sum([*grads, scalars], what="test")
    assert collective._device.method == "nccl"
    assert isinstance(sums[0], cupy.ndarray) and isinstance(sums[2], np.ndarray)
    for got, want in zip(sums[:2], grads, strict=True):
        np.testing.assert_array_equal(got.get(), want.get())
    np.testing.assert_array_equal(sums[2], scalars)


@pytest.mark.gpu
def test_gpu_device_step_without_corpus(gpu_backend):
    """The device halves of a step on synthetic data (no corpus needed): device
    gradients equal the numpy backend's, and the update stays on the device."""
    import types

    import cupy

    from npspeech import ctc, optim
    from npspeech.distributed.collective import Collective
    from npspeech.train_device import DeviceSteps

    config = ModelConfig(n_hidden=16, n_context=2, dropout=0.0)
    network = models.init(config, 6, 5, np.random.default_rng(0))
    data = np.random.default_rng(1)
    lengths = np.array([9, 7, 4], dtype=np.int32)
    features = np.zeros((9, 3, 6), dtype=np.float32)
    for b, n in enumerate(lengths):
        features[:n, b] = data.standard_normal((n, 6))
    batch = types.SimpleNamespace(
        features=features,
        lengths=lengths,
        targets=np.array([0, 1, 2, 3, 1, 0], dtype=np.int32),
        target_lengths=np.array([3, 2, 1], dtype=np.int32),
        utterances=[types.SimpleNamespace(source=f"u{b}") for b in range(3)],
    )
    logits, out_lengths, cache = models.forward(
        network, features, lengths, training=True, backend="numpy"
    )
    losses, dlogits = ctc.ctc_loss(
        logits, batch.targets, out_lengths, batch.target_lengths, reduction="none",
        backend="numpy",
    )  # fmt: skip
    want = models.backward(network, dlogits / 3, cache, backend="numpy")
    steps = DeviceSteps(Collective())
    device = network.copy()
    device.params = steps.kernels.to_device(device.params)
    local = steps.local_gradients(device, batch, 3, "batch 0", np.random.default_rng(0))
    assert local.problem == ""
    assert local.loss_sum == pytest.approx(float(losses.sum()), rel=1e-4)
    for name, grad in want.items():
        assert isinstance(local.grads[name], cupy.ndarray)
        np.testing.assert_allclose(
            local.grads[name].get(), grad, rtol=1e-3, atol=1e-5, err_msg=name
        )
    state = steps.kernels.to_device(optim.adam_init(network.params))
    steps.clip_grad_norm(local.grads, 1.0)
    params, _ = steps.adam_step(device.params, local.grads, state, 1e-3)
    assert all(isinstance(v, cupy.ndarray) for v in params.values())
