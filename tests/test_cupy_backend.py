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
from npspeech import features
from npspeech.backends import numpy_ref
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


@pytest.fixture(scope="module")
def gpu_backend():
    """The real cupy backend; skips saying what is missing (CuPy or a device)."""
    try:
        return backends.get_backend("cupy")
    except ConfigError as error:
        pytest.skip(str(error))


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
