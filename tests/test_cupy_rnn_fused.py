"""The one-launch LSTM and GRU forward steps of the cupy backend
(:mod:`npspeech.backends.cupy_gpu.rnn_fused`) against the NumPy reference.

CPU half: through the NumPy stand-in for CuPy, whose ``RawKernel`` runs each kernel's
NumPy twin. That checks the orchestration (one launch per step and no GEMM in the
time loop, the double-buffered state, the launch geometry over batch rows and hidden
units that do not fill a block) but not the CUDA source. GPU half (``-m gpu``): the
CUDA sources on a device, both the one-launch and the two-launch step, against the
reference.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import test_cupy_backend as backend_tests

from npspeech.backends import numpy_ref

GPU_RTOL_FLOAT32 = backend_tests.GPU_RTOL_FLOAT32
GPU_ATOL_FLOAT32 = backend_tests.GPU_ATOL_FLOAT32
PACKAGE = backend_tests.PACKAGE
fake_backend = backend_tests.fake_backend  # the backend over the NumPy stand-in

GATES = {"lstm": 4, "gru": 3}
# (T, B, F, H): rows and units that fill no block (ROWS 4, THREADS 64), a tiny layer,
# and a state wider than one shared-memory tile (TILE 32)
SHAPES = [(6, 5, 3, 70), (4, 2, 5, 4), (3, 9, 4, 33)]


def _case(kind, T, B, F, H, dtype, seed=0):
    """A padded batch (full, short and empty rows) and a layer with random state."""
    rng = np.random.default_rng(seed)
    G = GATES[kind]

    def a(*shape, scale=1.0):
        return (rng.standard_normal(shape) * scale).astype(dtype)

    lengths = np.full(B, T, dtype=np.int32)
    lengths[1::3] = T // 2
    lengths[2::3] = 0
    x = a(T, B, F)
    x[np.arange(T)[:, None] >= lengths[None, :]] = 0
    weights = (a(F, G * H, scale=0.5), a(H, G * H, scale=0.3), a(G * H, scale=0.1),
               a(G * H, scale=0.1))  # fmt: skip
    states = (a(B, H),) if kind == "gru" else (a(B, H), a(B, H))
    return (x, lengths, *weights, *states)


def _compare(got, want, dtype, rtol, atol):
    assert len(got) == len(want)
    for index, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g.dtype == dtype, index
        np.testing.assert_allclose(np.asarray(g), w, rtol=rtol, atol=atol,
                                   err_msg=f"output {index}")  # fmt: skip


class _Counts:
    """Launches of the fused kernels and the stand-in's ``matmul`` calls."""

    def __init__(self, monkeypatch, fused, cupy_module):
        self.launches = 0
        self.matmuls = 0
        for table in (fused._LSTM, fused._GRU):
            for dtype, kernel in list(table.items()):

                def launch(*args, _kernel=kernel):
                    self.launches += 1
                    return _kernel(*args)

                monkeypatch.setitem(table, dtype, launch)
        matmul = cupy_module.matmul

        def counted(*args, **kwargs):
            self.matmuls += 1
            return matmul(*args, **kwargs)

        monkeypatch.setattr(cupy_module, "matmul", counted, raising=False)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "T{}B{}F{}H{}".format(*s))
@pytest.mark.parametrize("kind", list(GATES))
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_one_launch_per_step_matches_reference(
    fake_backend,
    monkeypatch,
    kind,
    shape,
    dtype,
):
    import cupy

    fused = importlib.import_module(f"{PACKAGE}.rnn_fused")
    args = _case(kind, *shape, dtype)
    forward = f"{kind}_forward"
    want = getattr(numpy_ref, forward)(*args)
    counts = _Counts(monkeypatch, fused, cupy)
    assert fused.wanted(shape[3], dtype)
    got = getattr(fake_backend, forward)(*args)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    _compare(got, want, dtype, tol, tol)
    assert counts.launches == shape[0] and counts.matmuls == 0
    # the two-launch step: a GEMM per step, and the same results
    monkeypatch.setattr(fused, "FUSED_STEP_MAX_HIDDEN", 0)
    counts.launches = 0
    again = getattr(fake_backend, forward)(*args)
    _compare(again, want, dtype, tol, tol)
    assert counts.launches == 0 and counts.matmuls == shape[0]


def test_the_one_launch_step_has_a_bound(fake_backend, monkeypatch):
    fused = importlib.import_module(f"{PACKAGE}.rnn_fused")
    bound = fused.FUSED_STEP_MAX_HIDDEN
    assert fused.wanted(bound, np.float32) and fused.wanted(1, np.float64)
    assert not fused.wanted(bound + 1, np.float32)
    assert not fused.wanted(4, np.float16)  # no kernel compiled for it
    monkeypatch.setattr(fused, "FUSED_STEP_MAX_HIDDEN", 0)
    assert not fused.wanted(1, np.float32)


def test_twin_rejects_a_state_read_where_it_is_written(fake_backend):
    """The twin checks what would race on a device: ``h_in`` is ``h_out``."""
    fused = importlib.import_module(f"{PACKAGE}.rnn_fused")
    x, lengths, W_ih, W_hh, b_ih, b_hh, h0 = _case("gru", 2, 3, 2, 5, np.float32)
    ax = x[0] @ W_ih + b_ih
    out = [np.zeros((3, 15), np.float32), np.zeros((3, 5), np.float32),
           np.zeros((3, 5), np.float32)]  # fmt: skip
    with pytest.raises(AssertionError, match="h_in and h_out must differ"):
        fused.gru_step(ax, W_hh, b_hh, lengths, 0, h0, h0, *out)


# --- on a GPU ------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("path", ["one-launch", "two-launch"])
@pytest.mark.parametrize(
    "shape", [*SHAPES, (5, 33, 7, 300)], ids=lambda s: "T{}B{}F{}H{}".format(*s)
)
@pytest.mark.parametrize("kind", list(GATES))
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_gpu_forward_step_matches_reference(
    gpu_backend, monkeypatch, kind, shape, dtype, path
):
    """The CUDA sources of both steps on the device, device arrays in and out."""
    import cupy

    from npspeech.backends.cupy_gpu import rnn_fused

    bound = max(rnn_fused.FUSED_STEP_MAX_HIDDEN, shape[3])
    monkeypatch.setattr(
        rnn_fused, "FUSED_STEP_MAX_HIDDEN", bound if path == "one-launch" else 0
    )
    args = _case(kind, *shape, dtype)
    want = getattr(numpy_ref, f"{kind}_forward")(*args)
    device_args = [cupy.asarray(a) for a in args]
    got = getattr(gpu_backend, f"{kind}_forward")(*device_args)
    assert all(isinstance(g, cupy.ndarray) for g in got)
    if dtype == np.float64:
        rtol, atol = 1e-10, 1e-12
    else:
        rtol, atol = GPU_RTOL_FLOAT32, GPU_ATOL_FLOAT32
    _compare([g.get() for g in got], want, dtype, rtol, atol)


# --- the CUDA sources, compiled for the CPU ------------------------------------------


_BUILT: dict[str, object] = {}  # CUDA source -> its CPU build, across tests


@pytest.fixture
def cpu_kernels(fake_backend, tmp_path_factory):
    """Each fused kernel's CUDA source built with the host C++ compiler
    (:mod:`helpers.cuda_on_cpu`): kernel name -> callable."""
    from helpers.cuda_on_cpu import compile_kernel

    fused = importlib.import_module(f"{PACKAGE}.rnn_fused")
    built = {}
    for name, source in fused.SOURCES.items():
        if source not in _BUILT:
            workdir = tmp_path_factory.mktemp("cuda_on_cpu")
            _BUILT[source] = compile_kernel(source, name, workdir)
        built[name] = _BUILT[source]
    if None in built.values():
        pytest.skip("no C++20 compiler (g++ or c++ with <barrier>) on this machine")
    return built


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "T{}B{}F{}H{}".format(*s))
@pytest.mark.parametrize("kind", list(GATES))
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_cuda_source_run_on_the_cpu_matches_reference(
    fake_backend, monkeypatch, cpu_kernels, kind, shape, dtype
):
    """The kernels' own CUDA code (index arithmetic, shared-memory tiles, barriers,
    bounds of partial blocks), one CPU thread per CUDA thread, in place of the
    twins."""
    fused = importlib.import_module(f"{PACKAGE}.rnn_fused")
    table = fused._LSTM if kind == "lstm" else fused._GRU
    c_type = "float" if dtype == np.float32 else "double"
    monkeypatch.setitem(
        table, np.dtype(dtype), cpu_kernels[f"npspeech_{kind}_step_fused_{c_type}"]
    )
    args = _case(kind, *shape, dtype)
    want = getattr(numpy_ref, f"{kind}_forward")(*args)
    got = getattr(fake_backend, f"{kind}_forward")(*args)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    _compare(got, want, dtype, tol, tol)
