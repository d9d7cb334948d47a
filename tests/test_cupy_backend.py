"""The CuPy backend against the NumPy reference.

Two halves:

- CPU tests (default run): the whole backend runs against a stand-in ``cupy`` module
  backed by NumPy (:func:`fake_cupy`), whose ``ElementwiseKernel``/``RawKernel`` run the
  NumPy twin registered for each CUDA kernel. They check the host orchestration
  (GEMMs, padding, the state carried between time steps, the host/device boundary) and
  the kernels' index logic, plus the error messages of ``get_backend("cupy")``.
- GPU tests (``-m gpu``): the same kernel table on a real device, where the CUDA
  sources run; they skip with the true reason (no CuPy, no CUDA device).
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import types

import numpy as np
import pytest
from helpers.tolerances import (
    BACKEND_ATOL_FLOAT32,
    BACKEND_ATOL_FLOAT64,
    BACKEND_RTOL_FLOAT32,
    BACKEND_RTOL_FLOAT64,
)

import npspeech.backends as backends
from npspeech import ctc as ctc_api
from npspeech import features, models, optim
from npspeech.backends import numpy_ref
from npspeech.config import ModelConfig
from npspeech.errors import ConfigError

# float32 on a GPU: cuBLAS and the fused kernels sum in other orders than NumPy, and
# device exp/tanh differ by an ulp or two; the recurrences carry those through T steps.
GPU_RTOL_FLOAT32 = 1e-4
GPU_ATOL_FLOAT32 = 2e-5

PACKAGE = "npspeech.backends.cupy_gpu"


# --- a NumPy stand-in for cupy -------------------------------------------------------


class DeviceArray(np.ndarray):
    """What the stand-in calls a device array: a NumPy array of its own class, so
    that the backend's host/device boundary can be checked."""

    def get(self):
        return self.view(np.ndarray).copy()


def _device(value):
    if isinstance(value, np.ndarray) and not isinstance(value, DeviceArray):
        return value.view(DeviceArray)
    if isinstance(value, tuple):
        return tuple(_device(v) for v in value)
    return value


def _wrapped(target):
    """A namespace over ``target`` whose functions return DeviceArrays."""

    class Proxy(types.ModuleType):
        def __getattr__(self, name):
            value = getattr(target, name)
            if callable(value) and not isinstance(value, type):
                return lambda *a, **k: _device(value(*a, **k))
            return value

    return Proxy(getattr(target, "__name__", "proxy"))


class _FakeElementwise:
    def __init__(self, in_params, out_params, body, name):
        from npspeech.backends.cupy_gpu._compile import TWINS

        self.twin = TWINS[name]
        self.n_out = len(out_params.split(","))

    def __call__(self, *args):
        self.twin(*args)
        outs = args[-self.n_out :]
        return outs[0] if self.n_out == 1 else outs


class _FakeRaw:
    def __init__(self, source, name):
        from npspeech.backends.cupy_gpu._compile import TWINS

        self.twin = TWINS[name]

    def __call__(self, grid, block, args, shared_mem=0):
        self.twin(grid, block, args)


def fake_cupy(device_count=1, error=None):
    """A ``cupy`` module backed by NumPy, seeing ``device_count`` devices (or raising
    ``error`` when asked)."""
    fake = _wrapped(np)
    fake.ndarray = DeviceArray
    fake.fft = _wrapped(np.fft)
    fake.lib = types.SimpleNamespace(stride_tricks=_wrapped(np.lib.stride_tricks))
    fake.ElementwiseKernel = _FakeElementwise
    fake.RawKernel = _FakeRaw

    def count():
        if error is not None:
            raise error
        return device_count

    fake.cuda = types.SimpleNamespace(
        runtime=types.SimpleNamespace(getDeviceCount=count)
    )
    return fake


def _forget_backend():
    for name in [m for m in sys.modules if m.startswith(PACKAGE)]:
        del sys.modules[name]
    if hasattr(backends, "cupy_gpu"):
        delattr(backends, "cupy_gpu")


@pytest.fixture
def fake_backend(monkeypatch):
    """The cupy backend imported over the NumPy stand-in."""
    _forget_backend()
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy())
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        _forget_backend()


# --- unusable backend: the messages --------------------------------------------------


def test_missing_cupy_says_it_is_not_installed(monkeypatch):
    _forget_backend()
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy -> ModuleNotFoundError
    try:
        with pytest.raises(ConfigError) as caught:
            backends.get_backend("cupy")
    finally:
        _forget_backend()
    assert "CuPy is not installed (pip install npspeech[gpu])" in str(caught.value)
    assert "no CUDA device" not in str(caught.value)


@pytest.mark.parametrize(
    "fake",
    [fake_cupy(device_count=0), fake_cupy(error=RuntimeError("cudaErrorNoDevice"))],
    ids=["zero-devices", "runtime-error"],
)
def test_missing_device_says_no_cuda_device(monkeypatch, fake):
    _forget_backend()
    monkeypatch.setitem(sys.modules, "cupy", fake)
    try:
        with pytest.raises(ConfigError) as caught:
            backends.get_backend("cupy")
    finally:
        _forget_backend()
    assert "no CUDA device" in str(caught.value)
    assert "not installed" not in str(caught.value)


def test_available_backends_leaves_out_an_unusable_cupy(monkeypatch):
    _forget_backend()
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(device_count=0))
    try:
        assert "cupy" not in backends.available_backends()
        assert {"numpy", "numba"} <= set(backends.available_backends())
    finally:
        _forget_backend()


def test_cpu_paths_never_import_cupy():
    code = (
        "import sys, numpy as np\n"
        "import npspeech, npspeech.backends.numba_cpu, npspeech.backends.numpy_ref\n"
        "from npspeech import features, models, ctc, optim, train\n"
        "features.mfcc(np.zeros(16000, np.float32), backend='numba')\n"
        "assert 'cupy' not in sys.modules, 'cupy imported'\n"
        "assert 'npspeech.backends.cupy_gpu' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_importing_the_backend_compiles_nothing(fake_backend):
    """Kernels are built on their first call, so import costs no compilation."""
    from npspeech.backends.cupy_gpu import _compile

    for module in ("layers", "rnn", "ctc"):
        lazies = [
            v
            for v in vars(sys.modules[f"{PACKAGE}.{module}"]).values()
            if isinstance(v, _compile._Lazy)
        ]
        assert lazies and all(kernel._kernel is None for kernel in lazies)


def test_backend_has_the_reference_api(fake_backend):
    reference = {n for n in dir(numpy_ref) if not n.startswith("_")}
    reference -= {"ctc", "features", "layers", "rnn"}  # submodules
    mine = {n for n in dir(fake_backend) if not n.startswith("_")}
    assert reference <= mine, sorted(reference - mine)
    assert fake_backend.NAME == "cupy"


# --- the kernel table ----------------------------------------------------------------
# Each case builds the arguments of one kernel call (host arrays) from a generator and a
# dtype; the same table runs on the stand-in (CPU) and on a device (-m gpu).

T_, B_, F_, H_ = 6, 3, 5, 4
LENGTHS = np.array([6, 3, 0], dtype=np.int32)  # full, padded, empty


def _a(rng, shape, dtype, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


def _padded(rng, dtype, F=F_):
    x = _a(rng, (T_, B_, F), dtype)
    return numpy_ref.mask_padded(x, LENGTHS)


def _rnn_weights(rng, dtype, G):
    return (
        _a(rng, (F_, G * H_), dtype, 0.5),
        _a(rng, (H_, G * H_), dtype, 0.5),
        _a(rng, (G * H_,), dtype, 0.1),
        _a(rng, (G * H_,), dtype, 0.1),
    )


def _case_rnn(rng, dtype):
    W_ih, W_hh, b_ih, b_hh = _rnn_weights(rng, dtype, 1)
    x = _padded(rng, dtype)
    h0 = _a(rng, (B_, H_), dtype)
    return x, LENGTHS, W_ih, W_hh, b_ih, b_hh, h0, 1.5


def _case_rnn_backward(rng, dtype):
    x, lengths, W_ih, W_hh, b_ih, b_hh, h0, ceiling = _case_rnn(rng, dtype)
    y, _ = numpy_ref.rnn_forward(x, lengths, W_ih, W_hh, b_ih, b_hh, h0, ceiling)
    dy, dh_n = _a(rng, y.shape, dtype), _a(rng, h0.shape, dtype)
    return dy, dh_n, x, lengths, W_ih, W_hh, h0, y, ceiling


def _case_lstm(rng, dtype):
    W_ih, W_hh, b_ih, b_hh = _rnn_weights(rng, dtype, 4)
    x = _padded(rng, dtype)
    return (x, LENGTHS, W_ih, W_hh, b_ih, b_hh, _a(rng, (B_, H_), dtype),
            _a(rng, (B_, H_), dtype))  # fmt: skip


def _case_lstm_backward(rng, dtype):
    x, lengths, W_ih, W_hh, b_ih, b_hh, h0, c0 = _case_lstm(rng, dtype)
    y, gates, cells, _, _ = numpy_ref.lstm_forward(
        x, lengths, W_ih, W_hh, b_ih, b_hh, h0, c0
    )
    dy = _a(rng, y.shape, dtype)
    dh_n, dc_n = _a(rng, h0.shape, dtype), _a(rng, h0.shape, dtype)
    return dy, dh_n, dc_n, x, lengths, W_ih, W_hh, h0, c0, y, gates, cells


def _case_gru(rng, dtype):
    W_ih, W_hh, b_ih, b_hh = _rnn_weights(rng, dtype, 3)
    return (
        _padded(rng, dtype),
        LENGTHS,
        W_ih,
        W_hh,
        b_ih,
        b_hh,
        _a(rng, (B_, H_), dtype),
    )


def _case_gru_backward(rng, dtype):
    x, lengths, W_ih, W_hh, b_ih, b_hh, h0 = _case_gru(rng, dtype)
    y, gates, hn, _ = numpy_ref.gru_forward(x, lengths, W_ih, W_hh, b_ih, b_hh, h0)
    dy, dh_n = _a(rng, y.shape, dtype), _a(rng, h0.shape, dtype)
    return dy, dh_n, x, lengths, W_ih, W_hh, h0, y, gates, hn


def _case_ctc(rng, dtype):
    V = 5
    logits = _a(rng, (T_, 4, V), dtype, 2.0)
    # labels: with a repeat, empty, infeasible (4 labels + 2 repeats > 3 frames), single
    labels = [[1, 1, 2], [], [0, 0, 3, 3], [2]]
    targets = np.array([k for seq in labels for k in seq], dtype=np.int32)
    target_lengths = np.array([len(seq) for seq in labels], dtype=np.int32)
    offsets = np.concatenate([[0], np.cumsum(target_lengths)[:-1]]).astype(np.int64)
    input_lengths = np.array([6, 2, 3, 0], dtype=np.int32)
    return logits, targets, offsets, input_lengths, target_lengths, V - 1


def _case_conv(rng, dtype):
    return (
        _a(rng, (7, 2, 2, 6), dtype),
        _a(rng, (3, 2, 3, 2), dtype),
        _a(rng, (3,), dtype),
        2,
        1,
    )


def _case_conv_backward(rng, dtype):
    xp, W, b, st, sf = _case_conv(rng, dtype)
    y = numpy_ref.conv2d_forward(xp, W, b, st, sf)
    return _a(rng, y.shape, dtype), xp, W, st, sf


def _bn_case(rng, dtype):
    x = _a(rng, (T_, B_, 2, 3), dtype)
    return numpy_ref.mask_padded(x, LENGTHS), LENGTHS


def _case_bn_backward(rng, dtype):
    x, lengths = _bn_case(rng, dtype)
    mean, var = numpy_ref.masked_moments(x, lengths)
    invstd = (1 / np.sqrt(var + 1e-5)).astype(dtype)
    return _a(rng, x.shape, dtype), x, lengths, mean, invstd, _a(rng, (2,), dtype), True


def _case_adam(rng, dtype, decoupled):
    shape = (4, 3)
    return (_a(rng, shape, dtype), _a(rng, shape, dtype), _a(rng, shape, dtype, 0.1),
            np.abs(_a(rng, shape, dtype, 0.1)), 1e-2, 0.9, 0.999, 1e-8, 0.01,
            decoupled, 3)  # fmt: skip


def _signal(rng, dtype):
    return _a(rng, 2000, dtype, 0.1)


def _feature_case(rng, dtype, kind):
    fc = features
    window = fc.window_function("hann_periodic", 512)
    signal = _signal(rng, dtype)
    if kind == "power":
        return signal, window, 160, 512
    if kind == "spectrogram":
        return signal, window, 160, 512, "log1p", 1e-10
    bank = fc.tf_mel_bank(512, 16000)
    if kind == "mel":
        return signal, window, 160, 512, bank, 1e-12
    return signal, window, 160, 512, bank, fc.dct_matrix(bank.n_channels, 13), 1e-12


CASES = {
    "mask_padded": lambda r, d: (_a(r, (T_, B_, F_), d), LENGTHS),
    "dense_forward": lambda r, d: (
        _a(r, (7, F_), d),
        _a(r, (F_, 3), d),
        _a(r, (3,), d),
    ),
    "dense_backward": lambda r, d: (
        _a(r, (7, F_), d),
        _a(r, (F_, 3), d),
        _a(r, (7, 3), d),
    ),
    "dense_clip_forward": lambda r, d: (
        _a(r, (7, F_), d),
        _a(r, (F_, 3), d),
        _a(r, (3,), d),
        0.0,
        1.0,
    ),
    "dense_clip_backward": lambda r, d: (
        _a(r, (7, F_), d),
        _a(r, (F_, 3), d),
        numpy_ref.clip_forward(_a(r, (7, 3), d), -0.5, 0.5),
        _a(r, (7, 3), d),
        -0.5,
        0.5,
    ),
    "clip_forward": lambda r, d: (_a(r, (4, 5), d, 2.0), -1.0, 1.0),
    "clip_backward": lambda r, d: (
        _a(r, (4, 5), d),
        numpy_ref.clip_forward(_a(r, (4, 5), d), 0.0, 0.5),
        0.0,
        0.5,
    ),
    "log_softmax_forward": lambda r, d: (_a(r, (4, 6), d, 3.0),),
    "log_softmax_backward": lambda r, d: (
        _a(r, (4, 6), d),
        numpy_ref.log_softmax_forward(_a(r, (4, 6), d)),
    ),
    "dropout_apply": lambda r, d: (_a(r, (4, 5), d), r.random((4, 5)) < 0.7, 1 / 0.7),
    "im2col": lambda r, d: (_a(r, (7, 2, 2, 6), d), 3, 2, 2, 1, 1, 3),
    "conv2d_forward": _case_conv,
    "conv2d_backward": _case_conv_backward,
    "masked_moments": _bn_case,
    "batch_norm_apply": lambda r, d: _bn_case(r, d) + (_a(r, (2,), d), _a(r, (2,), d)),
    "batch_norm_backward": _case_bn_backward,
    "layer_norm_forward": lambda r, d: (
        _a(r, (4, 6), d),
        _a(r, (6,), d),
        _a(r, (6,), d),
        1e-5,
    ),
    "layer_norm_backward": lambda r, d: (
        _a(r, (4, 6), d),
        _a(r, (4, 6), d),
        np.abs(_a(r, (4,), d)) + 0.5,
        _a(r, (6,), d),
    ),
    "lookahead_forward": lambda r, d: (_padded(r, d), LENGTHS, _a(r, (3, F_), d)),
    "lookahead_backward": lambda r, d: (
        _a(r, (T_, B_, F_), d),
        _padded(r, d),
        LENGTHS,
        _a(r, (3, F_), d),
    ),
    "adam_update": lambda r, d: _case_adam(r, d, False),
    "adamw_update": lambda r, d: _case_adam(r, d, True),
    "sgd_update": lambda r, d: (
        _a(r, (4, 3), d),
        _a(r, (4, 3), d),
        _a(r, (4, 3), d),
        0.1,
        0.9,
        0.0,
        0.01,
        True,
        False,
    ),
    "rnn_forward": _case_rnn,
    "rnn_backward": _case_rnn_backward,
    "lstm_forward": _case_lstm,
    "lstm_backward": _case_lstm_backward,
    "gru_forward": _case_gru,
    "gru_backward": _case_gru_backward,
    "ctc_loss_and_grad": _case_ctc,
    "power_spectrum": lambda r, d: _feature_case(r, d, "power"),
    "log_spectrogram": lambda r, d: _feature_case(r, d, "spectrogram"),
    "log_mel_spectrum": lambda r, d: _feature_case(r, d, "mel"),
    "mfcc_frames": lambda r, d: _feature_case(r, d, "mfcc"),
    "context_windows": lambda r, d: (_a(r, (7, 3), d), 2),
}


def _kernel_name(case):
    return "adam_update" if case == "adamw_update" else case


def _leaves(value):
    if isinstance(value, (tuple, list)):
        return [leaf for v in value for leaf in _leaves(v)]
    return [value]


def _compare(got, want, dtype, rtol, atol, case):
    got, want = _leaves(got), _leaves(want)
    assert len(got) == len(want), case
    for k, (g, w) in enumerate(zip(got, want, strict=True)):
        if w is None:
            assert g is None, (case, k)
            continue
        assert type(g) is np.ndarray, (case, k, type(g))  # host in, host out
        assert g.shape == np.shape(w) and g.dtype == np.asarray(w).dtype, (case, k)
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=f"{case}[{k}]")


def _run_case(module, case, rng, dtype, rtol, atol):
    args = CASES[case](rng, dtype)
    name = _kernel_name(case)
    want = getattr(numpy_ref, name)(*args)
    got = getattr(module, name)(*args)
    _compare(got, want, dtype, rtol, atol, case)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_kernel_orchestration_matches_reference(fake_backend, case, dtype, rng):
    """Every kernel, run through the stand-in with the CUDA kernels' NumPy twins."""
    if dtype == np.float64:
        rtol, atol = BACKEND_RTOL_FLOAT64, BACKEND_ATOL_FLOAT64
    else:
        rtol, atol = BACKEND_RTOL_FLOAT32, BACKEND_ATOL_FLOAT32
    _run_case(fake_backend, case, rng, dtype, rtol, atol)


@pytest.mark.gpu
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_gpu_kernel_matches_reference(gpu_backend, case, dtype, rng):
    """Every CUDA kernel on the device against the NumPy reference, gradients too."""
    if dtype == np.float64:
        rtol, atol = BACKEND_RTOL_FLOAT64 * 100, BACKEND_ATOL_FLOAT64 * 100
    else:
        rtol, atol = GPU_RTOL_FLOAT32, GPU_ATOL_FLOAT32
    _run_case(gpu_backend, case, rng, dtype, rtol, atol)


# --- host/device boundary ------------------------------------------------------------


def test_device_inputs_stay_on_the_device(fake_backend, rng):
    """Device arrays in, device arrays out (no transfer); NumPy in, NumPy out."""
    args = CASES["lstm_forward"](rng, np.float32)
    device_args = tuple(
        a.view(DeviceArray) if isinstance(a, np.ndarray) else a for a in args
    )
    on_device = fake_backend.lstm_forward(*device_args)
    on_host = fake_backend.lstm_forward(*args)
    assert all(type(a) is DeviceArray for a in on_device)
    assert all(type(a) is np.ndarray for a in on_host)
    for a, b in zip(on_device, on_host, strict=True):
        np.testing.assert_array_equal(a.get(), b)


def test_host_out_buffers_receive_the_result(fake_backend, rng):
    x = _a(rng, (T_, B_, F_), np.float32)
    out = np.full_like(x, np.nan)
    returned = fake_backend.mask_padded(x, LENGTHS, out=out)
    assert returned is out
    np.testing.assert_array_equal(out, numpy_ref.mask_padded(x, LENGTHS))
    in_place = x.copy()
    fake_backend.mask_padded(in_place, LENGTHS, out=in_place)
    np.testing.assert_array_equal(in_place, out)
    dxp = _a(rng, (7, 2, 2, 6), np.float64)
    want = dxp.copy()
    dcols = _a(rng, (2 * 2 * 5, 2 * 3 * 2), np.float64)
    numpy_ref.col2im_add(dcols, want, 3, 2, 2, 1, 1)
    assert fake_backend.col2im_add(dcols, dxp, 3, 2, 2, 1, 1) is None
    np.testing.assert_array_equal(dxp, want)


def test_train_step_pieces_match_optim(fake_backend, rng):
    from npspeech.backends.cupy_gpu import train_step

    params = {"W": _a(rng, (4, 3), np.float32), "b": _a(rng, (3,), np.float32)}
    grads = {k: _a(rng, v.shape, np.float32, 10.0) for k, v in params.items()}
    state = optim.adam_init(params)
    want_grads, want_norm = optim.clip_grad_norm(grads, 1.0)
    want_params, want_state = optim.adam_step(
        params, want_grads, state, 1e-2, weight_decay=0.01, decoupled=True,
        backend="numpy",
    )  # fmt: skip
    d_params, d_grads, d_state = (
        train_step.to_device(t) for t in (params, grads, state)
    )
    norm = train_step.clip_grad_norm_(d_grads, 1.0)
    train_step.adam_step_(d_params, d_grads, d_state, 1e-2, weight_decay=0.01,
                          decoupled=True)  # fmt: skip
    assert type(norm) is float and norm == pytest.approx(want_norm, rel=1e-6)
    assert all(type(v) is DeviceArray for v in d_params.values())
    back_params, back_state = train_step.to_host(d_params), train_step.to_host(d_state)
    assert back_state["step"] == want_state["step"] == 1
    for name in params:
        np.testing.assert_allclose(back_params[name], want_params[name], rtol=1e-6)
        for moment in ("exp_avg", "exp_avg_sq"):
            key = f"{moment}.{name}"
            np.testing.assert_allclose(back_state[key], want_state[key], rtol=1e-6)


# --- a short training run: the same loss curve as the CPU ----------------------------


def _loss_curve(backend, steps=3, architecture="deepspeech"):
    config = {
        "deepspeech": ModelConfig(
            architecture="deepspeech", n_hidden=8, n_context=1, dropout=0.2
        ),
        "ds2": ModelConfig(
            architecture="ds2", n_hidden=6, dropout=0.0, conv_channels=(2,),
            conv_kernels=((3, 3),), conv_strides=((1, 2),), conv_padding=((1, 1),),
            rnn_kind="gru", rnn_layers=2,
        ),
    }[architecture]  # fmt: skip
    data = np.random.default_rng(42)
    network = models.init(config, 5, 4, np.random.default_rng(0))
    lengths = np.array([8, 6, 5], dtype=np.int32)
    x = np.zeros((8, 3, 5), dtype=np.float32)
    for b, n in enumerate(lengths):
        x[:n, b] = data.standard_normal((n, 5))
    targets = np.array([0, 1, 2, 2, 1, 0], dtype=np.int32)
    target_lengths = np.array([3, 2, 1], dtype=np.int32)
    state = optim.adam_init(network.params)
    curve = []
    for step in range(steps):
        dropout = np.random.default_rng([7, step])
        logits, out_lengths, cache = models.forward(
            network, x, lengths, training=True, rng=dropout, backend=backend
        )
        losses, dlogits = ctc_api.ctc_loss(
            logits, targets, out_lengths, target_lengths, reduction="none",
            backend=backend,
        )  # fmt: skip
        curve.append(float(np.mean(losses)))
        grads = models.backward(network, dlogits / 3, cache, backend=backend)
        grads, _ = optim.clip_grad_norm(grads, 5.0)
        network.params, state = optim.adam_step(
            network.params, grads, state, 1e-2, backend=backend
        )
        network.state = cache.state
    return np.array(curve)


@pytest.mark.parametrize("architecture", ["deepspeech", "ds2"])
def test_training_curve_orchestration_matches_cpu(fake_backend, architecture):
    want = _loss_curve("numpy", architecture=architecture)
    got = _loss_curve(fake_backend, architecture=architecture)
    assert np.all(np.isfinite(want)) and want[-1] != want[0]
    np.testing.assert_allclose(got, want, rtol=1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize("architecture", ["deepspeech", "ds2"])
def test_gpu_training_curve_matches_cpu(gpu_backend, architecture):
    """Three Adam steps from one seed on the GPU and on the CPU reference."""
    want = _loss_curve("numpy", architecture=architecture)
    got = _loss_curve(gpu_backend, architecture=architecture)
    np.testing.assert_allclose(got, want, rtol=1e-4)


@pytest.mark.gpu
def test_gpu_train_step_pieces_stay_on_the_device(gpu_backend, rng):
    import cupy

    from npspeech.backends.cupy_gpu import train_step

    params = {"W": _a(rng, (64, 32), np.float32)}
    grads = {"W": _a(rng, (64, 32), np.float32)}
    state = optim.adam_init(params)
    want, _ = optim.adam_step(params, grads, state, 1e-3, backend="numpy")
    d_params, d_grads, d_state = (
        train_step.to_device(t) for t in (params, grads, state)
    )
    train_step.adam_step_(d_params, d_grads, d_state, 1e-3)
    assert isinstance(d_params["W"], cupy.ndarray)
    np.testing.assert_allclose(d_params["W"].get(), want["W"], rtol=1e-6, atol=1e-7)
    args = CASES["ctc_loss_and_grad"](rng, np.float32)
    loss, grad = train_step.ctc_batch_loss(*train_step.to_device(args))
    assert isinstance(grad, cupy.ndarray) and loss == np.inf  # one infeasible sequence
