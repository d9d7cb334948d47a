"""Device-resident DeepSpeech2 (``ds2``, ``ds2-stream``) through the NumPy stand-in
for CuPy.

The layers of :mod:`npspeech.nn` that DeepSpeech2 adds to DeepSpeech (convolution,
batch norm, bidirectional recurrent layers, lookahead) allocate on the device of their
inputs; here they run on the stand-in's device arrays and must equal the numpy backend
on host arrays with nothing crossing the host/device boundary, and the trainer's
device step must keep every part of its state (weights, batch-norm running
statistics, Adam moments) on the device and reproduce the numpy backend's run.

Besides the uploads and downloads the recorder of :mod:`test_cupy_training` sees, the
stand-in here also counts scalar reads (``int``, ``float``, ``bool``, ``tolist``,
``item`` of a device array), which on a GPU synchronise with the device.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import test_cupy_training as training_tests
from test_cupy_backend import DeviceArray

from npspeech import models, train, train_device
from npspeech.config import ModelConfig
from npspeech.errors import ConfigError
from npspeech.nn import activations, conv, lookahead, norm, rnn

# Small DeepSpeech2 models on the real features: every layer kind of each architecture,
# a strided convolution (so output lengths differ from input lengths) and a second
# recurrent layer (so the sequence-wise batch norm runs).
DS2 = {
    "ds2": ModelConfig(
        architecture="ds2",
        n_hidden=6,
        dropout=0.0,
        conv_channels=(2, 2),
        conv_kernels=((3, 3), (3, 2)),
        conv_strides=((2, 2), (1, 1)),
        conv_padding=((1, 1), (1, 0)),
        rnn_kind="gru",
        rnn_layers=2,
    ),
    "ds2-stream": ModelConfig(
        architecture="ds2-stream",
        n_hidden=6,
        dropout=0.0,
        conv_channels=(2,),
        conv_kernels=((3, 3),),
        conv_strides=((2, 2),),
        conv_padding=((1, 1),),
        rnn_kind="lstm",
        rnn_layers=2,
        lookahead_context=2,
    ),
}
ARCHITECTURES = list(DS2)

# the recording stand-in and the three-utterance training set of test_cupy_training
transfers = training_tests.transfers
config = training_tests.config
_losses, _checkpoint = training_tests._losses, training_tests._checkpoint


def _keep_on_device(self, array, context=None, return_scalar=False):
    """Reductions of device arrays give 0-d device arrays, as in CuPy (NumPy gives
    host scalars), so that reading one back is seen."""
    return array.view(type(self)) if isinstance(array, np.ndarray) else array


@pytest.fixture
def reads(monkeypatch, transfers):
    """Scalar reads of device arrays while ``transfers.on`` is set (a list of
    method names)."""
    seen: list[str] = []
    monkeypatch.setattr(DeviceArray, "__array_wrap__", _keep_on_device, raising=False)
    for name in ("__int__", "__float__", "__bool__", "__index__", "tolist", "item"):
        method = getattr(np.ndarray, name)

        def read(self, *args, _name=name, _method=method):
            if transfers.on:
                seen.append(_name)
            return _method(self, *args)

        monkeypatch.setattr(DeviceArray, name, read, raising=False)
    return seen


def _device(value):
    """Host arrays (also in dicts) as stand-in device arrays, sharing memory."""
    if isinstance(value, dict):
        return {key: _device(v) for key, v in value.items()}
    return np.asarray(value).view(DeviceArray)


def _same(got, want, rtol=1e-5, atol=1e-6):
    """``got`` is a device array (or a dict of them) equal to the host ``want``."""
    if isinstance(want, dict):
        assert set(got) == set(want)
        for key in want:
            _same(got[key], want[key], rtol, atol)
        return
    assert type(got) is DeviceArray, type(got)
    np.testing.assert_allclose(got.view(np.ndarray), want, rtol=rtol, atol=atol)


def _padded(rng, shape, lengths):
    x = rng.standard_normal(shape).astype(np.float32)
    x[np.arange(shape[0])[:, None] >= lengths[None, :]] = 0
    return x


@pytest.fixture
def batch_lengths():
    return np.array([7, 4, 0], dtype=np.int32)  # a full, a short and an empty row


# --- the layers on device arrays -----------------------------------------------------


def test_conv_on_the_device(transfers, reads, batch_lengths, rng):
    params = conv.init(rng, 2, 3, (3, 2))
    x = _padded(rng, (7, 3, 2, 6), batch_lengths)
    options = {"stride": (2, 2), "padding": (1, 1)}
    y, cache = conv.forward(params, x, batch_lengths, backend="numpy", **options)
    dy = rng.standard_normal(y.shape).astype(np.float32)  # (4, 3, 3, 4)
    dx, grads = conv.backward(params, dy, cache, backend="numpy")
    transfers.on = True
    lengths = _device(batch_lengths)
    d_y, d_cache = conv.forward(
        _device(params), _device(x), lengths, backend="cupy", **options
    )
    d_dx, d_grads = conv.backward(_device(params), _device(dy), d_cache, backend="cupy")
    out = conv.output_lengths(lengths, (3, 2), (2, 2), (1, 1))
    transfers.on = False
    assert transfers.up == [] and transfers.down == [] and reads == []
    _same(d_y, y)
    _same(d_cache.xp, cache.xp)
    _same(d_dx, dx)
    _same(d_grads, grads, rtol=1e-4)
    _same(out, cache.out_lengths)
    assert out.dtype == np.int32


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("layout", ["sequence", "conv"])
def test_batch_norm_on_the_device(
    transfers, reads, batch_lengths, rng, layout, training, monkeypatch
):
    """Equal to the host; the count of valid values (Bessel's factor) is taken on
    the device, never through the host check, which the stand-in could not see
    read a device array back."""
    shape = (7, 3, 4) if layout == "sequence" else (7, 3, 2, 5)
    if layout == "sequence":
        forward = norm.batch_norm_forward
    else:
        forward = norm.batch_norm_conv_forward
    params, state = norm.batch_norm_init(shape[2])
    C = shape[2]
    params = {
        k: v + rng.uniform(-0.5, 0.5, C).astype(v.dtype) for k, v in params.items()
    }
    state = {
        "running_mean": rng.standard_normal(C).astype(np.float32),
        "running_var": rng.uniform(0.5, 2, C).astype(np.float32),
    }
    x = _padded(rng, shape, batch_lengths)
    dy = rng.standard_normal(shape).astype(np.float32)
    y, cache, new_state = forward(
        params, state, x, batch_lengths, training, backend="numpy"
    )
    dx, grads = norm.batch_norm_backward(params, dy, cache, backend="numpy")
    host_checks = []
    check = norm.training_count
    monkeypatch.setattr(
        norm, "training_count", lambda *a: host_checks.append(a) or check(*a)
    )
    transfers.on = True
    d_y, d_cache, d_state = forward(
        _device(params), _device(state), _device(x), _device(batch_lengths), training,
        backend="cupy",
    )  # fmt: skip
    d_dx, d_grads = norm.batch_norm_backward(
        _device(params), _device(dy), d_cache, backend="cupy"
    )
    transfers.on = False
    assert transfers.up == [] and transfers.down == [] and reads == []
    assert host_checks == []
    _same(d_y, y)
    _same(d_state, new_state)
    _same(d_dx, dx, atol=1e-5)
    _same(d_grads, grads, rtol=1e-4)


@pytest.mark.parametrize(
    "kind, bidirectional, merge",
    [("gru", True, "sum"), ("lstm", True, "concat"), ("rnn", False, "concat")],
)
def test_recurrent_layer_on_the_device(
    transfers, reads, batch_lengths, rng, kind, bidirectional, merge
):
    params = rnn.init(rng, kind, 5, 4, bidirectional=bidirectional)
    x = _padded(rng, (7, 3, 5), batch_lengths)
    H = 8 if merge == "concat" and bidirectional else 4
    dy = rng.standard_normal((7, 3, H)).astype(np.float32)
    options = {"bidirectional": bidirectional, "merge": merge}
    y, cache = rnn.forward(params, x, batch_lengths, kind, backend="numpy", **options)
    dx, grads = rnn.backward(params, dy, cache)
    transfers.on = True
    d_y, d_cache = rnn.forward(
        _device(params), _device(x), _device(batch_lengths), kind, backend="cupy",
        **options,
    )  # fmt: skip
    d_dx, d_grads = rnn.backward(_device(params), _device(dy), d_cache)
    transfers.on = False
    assert transfers.up == [] and transfers.down == [] and reads == []
    assert d_cache.backend.NAME == "cupy"
    _same(d_y, y)
    _same(d_dx, dx)
    _same(d_grads, grads, rtol=1e-4)
    states = d_cache.final_state if bidirectional else (d_cache.final_state,)
    for state in states:
        for array in state if kind == "lstm" else (state,):
            assert type(array) is DeviceArray


def test_lookahead_and_hardtanh_on_the_device(transfers, reads, batch_lengths, rng):
    params = lookahead.init(rng, 4, 2)
    x = _padded(rng, (7, 3, 4), batch_lengths)
    dy = rng.standard_normal((7, 3, 4)).astype(np.float32)
    y, cache = lookahead.forward(params, x, batch_lengths, backend="numpy")
    dx, grads = lookahead.backward(params, dy, cache, backend="numpy")
    h, h_cache = activations.hardtanh_forward(x, 0.0, 0.5, backend="numpy")
    dh = activations.hardtanh_backward(dy, h_cache, backend="numpy")
    transfers.on = True
    d_y, d_cache = lookahead.forward(
        _device(params), _device(x), _device(batch_lengths), backend="cupy"
    )
    d_dx, d_grads = lookahead.backward(
        _device(params), _device(dy), d_cache, backend="cupy"
    )
    d_h, d_h_cache = activations.hardtanh_forward(_device(x), 0.0, 0.5, backend="cupy")
    d_dh = activations.hardtanh_backward(_device(dy), d_h_cache, backend="cupy")
    transfers.on = False
    assert transfers.up == [] and transfers.down == [] and reads == []
    _same(d_y, y)
    _same(d_dx, dx)
    _same(d_grads, grads, rtol=1e-4)
    _same(d_h, h)
    _same(d_dh, dh)


@pytest.mark.parametrize("dropout", [0.0, 0.3], ids=["no-dropout", "dropout"])
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_forward_and_backward_on_the_device(
    transfers, reads, rng, architecture, dropout
):
    """The whole network: logits, new batch-norm state and every gradient on the
    device, equal to the numpy backend; the only uploads are the lengths (B int32)
    and, with dropout, one boolean mask per recurrent layer, drawn on the host from
    the same generator as the numpy backend's."""
    config = dataclasses.replace(DS2[architecture], dropout=dropout)
    network = models.init(config, 13, 5, rng)
    lengths = np.array([9, 6, 3], dtype=np.int32)
    x = _padded(rng, (9, 3, 13), lengths)
    logits, out_lengths, cache = models.forward(
        network, x, lengths, True, np.random.default_rng(0), backend="numpy"
    )
    dlogits = rng.standard_normal(logits.shape).astype(np.float32)
    grads = models.backward(network, dlogits, cache, backend="numpy")
    device = network.copy()
    device.params, device.state = _device(device.params), _device(device.state)
    transfers.on = True
    d_logits, d_out_lengths, d_cache = models.forward(
        device, _device(x), lengths, True, np.random.default_rng(0), backend="cupy"
    )
    d_grads = models.backward(device, _device(dlogits), d_cache, backend="cupy")
    transfers.on = False
    masks = ["b"] * config.rnn_layers if dropout else []
    assert [a.dtype.kind for a in transfers.up] == ["i", *masks]  # lengths once
    assert transfers.down == [] and reads == []
    np.testing.assert_array_equal(d_out_lengths, out_lengths)
    _same(d_logits, logits, atol=1e-5)
    _same(d_cache.state, cache.state)
    _same(d_grads, grads, rtol=1e-4, atol=1e-5)


def test_device_batch_norm_count_is_checked_on_the_host(transfers, rng):
    """A batch with one valid frame: the sequence-wise batch norm of the second
    recurrent layer cannot estimate a variance, on the host or on the device."""
    network = models.init(DS2["ds2"], 13, 5, rng)
    x, lengths = _padded(rng, (2, 1, 13), np.array([1])), np.array([1], np.int32)
    with pytest.raises(ConfigError, match="more than one valid value"):
        models.forward(network, x, lengths, True, rng, backend="numpy")
    network.params, network.state = _device(network.params), _device(network.state)
    with pytest.raises(ConfigError, match="rnn_2_bn: training needs more than one"):
        models.forward(network, _device(x), lengths, True, rng, backend="cupy")


# --- training ------------------------------------------------------------------------


def _ds2_config(config, architecture, backend, output_dir):
    return dataclasses.replace(
        config,
        model=DS2[architecture],
        max_batch_size=2,  # two batches per epoch, one of them padded
        epochs=3,
        backend=backend,
        output_dir=str(output_dir),
    )


def test_every_architecture_trains_on_the_device(transfers, config):
    assert set(train_device.DEVICE_ARCHITECTURES) == set(models.ARCHITECTURES)
    for architecture in ARCHITECTURES:
        cupy_config = _ds2_config(config, architecture, "cupy", config.output_dir)
        assert train.Trainer(cupy_config).device is not None


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_ds2_step_keeps_its_state_on_the_device(
    transfers, reads, config, tmp_path, architecture
):
    """Weights, batch-norm running statistics and Adam moments stay device arrays
    between steps; after the first step the features are the one float array
    uploaded, and only scalars come back (the output check, the loss, the norm)."""
    cupy_config = _ds2_config(config, architecture, "cupy", tmp_path / "cupy")
    trainer = train.Trainer(dataclasses.replace(cupy_config, epochs=2))
    step = trainer.train_step
    seen = []

    def recorded(batch, epoch, index):
        transfers.clear()
        reads.clear()
        transfers.on = True
        try:
            return step(batch, epoch, index)
        finally:
            transfers.on = False
            seen.append((batch.features.shape, transfers.up, transfers.down, [*reads]))
            state = trainer.state
            arrays = [*state.network.params.values(), *state.network.state.values()]
            arrays += [v for v in state.optimizer.values() if hasattr(v, "shape")]
            assert all(type(a) is DeviceArray for a in arrays)

    trainer.train_step = recorded
    result = trainer.run()
    assert result.steps == 4 and len(seen) == 4
    for index, (shape, up, down, scalar_reads) in enumerate(seen):
        floats = [a.shape for a in up if a.dtype.kind == "f"]
        if index == 0:  # the first step moves the weights, state and moments over
            assert len(floats) > 1 and shape in floats
        else:
            assert floats == [shape], f"step {index}: float uploads {floats}"
        assert all(int(np.prod(s)) <= 1 for s in down), f"step {index}: {down}"
        # What every device step reads, whatever the architecture: the finite checks
        # of the outputs (train_device and ctc), the longest target (the CTC
        # kernel's size), whether the losses are finite, their sum and the gradient
        # norm. The layers add none (one per batch-norm layer would show here).
        assert len(scalar_reads) + len(down) <= 6, f"step {index}: {scalar_reads}"
    saved = _checkpoint(cupy_config.output_dir)
    for part in (saved.network.params, saved.network.state):
        assert all(type(a) is np.ndarray for a in part.values())


def _rounding_noise(name: str) -> bool:
    """Whether ``name`` (a parameter, a state or an Adam moment) follows a gradient
    that is zero in exact arithmetic: a convolution's bias, since the batch norm
    after each convolution subtracts its channel mean, and the running mean that
    carries that bias. Its gradient is float32 rounding noise, which Adam scales up to
    steps of about the learning rate; numba differs from numpy there as much as the
    device does."""
    base = name.split(".")[-1]
    return base.startswith("conv_") and (
        base.endswith("/b") or base.endswith("_bn/running_mean")
    )


def _assert_same_run(got_dir, want_dir, rtol, learning_rate):
    """Equal loss curves; equal weights, batch-norm statistics and Adam moments in
    the last checkpoints (what follows rounding noise: within the learning rate
    times the steps)."""
    want, got = _losses(want_dir), _losses(got_dir)
    assert len(want) == 6 and np.all(np.isfinite(want)) and want[0] != want[-1]
    np.testing.assert_allclose(got, want, rtol=rtol)
    first, second = _checkpoint(want_dir), _checkpoint(got_dir)
    assert second.step == first.step == 6
    noise_bound = 6 * learning_rate
    pairs = [
        *((first.network.params[k], second.network.params[k], k)
          for k in first.network.params),
        *((first.network.state[k], second.network.state[k], k)
          for k in first.network.state),
    ]  # fmt: skip
    assert set(first.network.state) == set(second.network.state)
    assert set(first.optimizer) == set(second.optimizer)
    assert second.optimizer["step"] == 6
    for want_value, got_value, name in pairs:
        assert got_value.shape == want_value.shape, name
        assert got_value.dtype == want_value.dtype, name
        if _rounding_noise(name):
            assert np.abs(got_value - want_value).max() <= noise_bound, name
        else:
            np.testing.assert_allclose(
                got_value, want_value, rtol=rtol * 10, atol=1e-5, err_msg=name
            )
    for name, value in first.optimizer.items():
        if name != "step" and not _rounding_noise(name):
            scale = float(np.abs(value).max())  # moments span decades: their scale
            np.testing.assert_allclose(
                second.optimizer[name], value, rtol=rtol * 10, atol=rtol * scale,
                err_msg=name,
            )  # fmt: skip
    assert any(_rounding_noise(name) for name in first.network.params)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_ds2_device_training_matches_numpy_and_resumes_across_backends(
    transfers, config, tmp_path, architecture
):
    """Six steps on the device give the numpy backend's losses, weights, batch-norm
    running statistics and Adam moments; a run stopped on the device finishes on the
    numba backend, and one stopped on numba finishes on the device."""
    reference = train.train(_ds2_config(config, architecture, "numpy", tmp_path / "np"))
    device_dir = tmp_path / "cupy"
    train.train(_ds2_config(config, architecture, "cupy", device_dir))
    lr = config.learning_rate
    _assert_same_run(device_dir, reference.output_dir, 1e-5, lr)
    for first, second in (("cupy", "numba"), ("numba", "cupy")):
        split_dir = tmp_path / f"{first}-{second}"
        stopped = train.train(
            _ds2_config(config, architecture, first, split_dir), max_steps=3
        )
        assert stopped.stopped == "max_steps"
        resumed = train.train(
            _ds2_config(config, architecture, second, split_dir), resume=True
        )
        assert resumed.steps == 6
        _assert_same_run(split_dir, reference.output_dir, 1e-4, lr)


@pytest.mark.parametrize(
    "option",
    [{"batch_norm_utterances": 2}, {"freeze_batch_norm": True}],
    ids=["recomputed", "frozen"],
)
def test_device_batch_norm_options_match_numpy(transfers, config, tmp_path, option):
    """Batch-norm statistics recomputed after each epoch, or frozen, on the device
    give the numpy backend's run; the recomputed statistics go back to the device."""
    runs = {}
    for backend in ("numpy", "cupy"):
        runs[backend] = dataclasses.replace(
            _ds2_config(config, "ds2-stream", backend, tmp_path / backend), **option
        )
    reference = train.train(runs["numpy"])
    trainer = train.Trainer(runs["cupy"])
    trainer.run()
    assert all(type(v) is DeviceArray for v in trainer.state.network.state.values())
    _assert_same_run(
        tmp_path / "cupy", reference.output_dir, 1e-5, config.learning_rate
    )


# --- on a GPU ------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_gpu_ds2_forward_and_backward_match_numpy(gpu_backend, rng, architecture):
    """The whole network on CuPy arrays: logits, batch-norm state and gradients
    equal the numpy backend's (no corpus needed)."""
    import cupy

    network = models.init(DS2[architecture], 13, 5, rng)
    lengths = np.array([9, 6, 3], dtype=np.int32)
    x = _padded(rng, (9, 3, 13), lengths)
    dropout_rng = np.random.default_rng(0)
    logits, _, cache = models.forward(
        network, x, lengths, True, dropout_rng, backend="numpy"
    )
    dlogits = rng.standard_normal(logits.shape).astype(np.float32)
    grads = models.backward(network, dlogits, cache, backend="numpy")
    device = network.copy()
    device.params = {k: cupy.asarray(v) for k, v in device.params.items()}
    device.state = {k: cupy.asarray(v) for k, v in device.state.items()}
    d_logits, _, d_cache = models.forward(
        device, cupy.asarray(x), lengths, True, np.random.default_rng(0),
        backend="cupy",
    )  # fmt: skip
    d_grads = models.backward(device, cupy.asarray(dlogits), d_cache, backend="cupy")
    assert isinstance(d_logits, cupy.ndarray)
    np.testing.assert_allclose(d_logits.get(), logits, rtol=1e-4, atol=5e-5)
    for name, value in cache.state.items():
        assert isinstance(d_cache.state[name], cupy.ndarray), name
        np.testing.assert_allclose(
            d_cache.state[name].get(), value, rtol=1e-4, atol=1e-5, err_msg=name
        )
    for name, grad in grads.items():
        assert isinstance(d_grads[name], cupy.ndarray), name
        np.testing.assert_allclose(
            d_grads[name].get(), grad, rtol=1e-3, atol=1e-4, err_msg=name
        )


@pytest.mark.gpu
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_gpu_ds2_training_matches_numpy_and_resumes_on_numba(
    gpu_backend, config, tmp_path, architecture
):
    reference = train.train(_ds2_config(config, architecture, "numpy", tmp_path / "np"))
    device_dir = tmp_path / "cupy"
    stopped = train.train(
        _ds2_config(config, architecture, "cupy", device_dir), max_steps=4
    )
    assert stopped.stopped == "max_steps"
    saved = _checkpoint(device_dir)
    assert all(type(a) is np.ndarray for a in saved.network.state.values())
    resumed = train.train(
        _ds2_config(config, architecture, "numba", device_dir), resume=True
    )
    assert resumed.steps == 6
    np.testing.assert_allclose(
        _losses(device_dir), _losses(reference.output_dir), rtol=1e-3
    )
