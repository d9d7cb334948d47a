"""conv kernels of the numba_cpu backend: the 2D convolution over (time, frequency).

Same names, signatures and results as the convolution in
:mod:`npspeech.backends.numpy_ref.layers`, which is the spec (im2col + GEMM).

Convolutions with time stride 1 (DeepSpeech 2's second layer, kernel 11 x 21 over 32
channels) take a different route here. im2col copies every input value ``kt * kf``
times (3.9 GB for that layer on a 16 x 400-frame batch) and multiplies by a skinny
``(C_out, C_in*kt*kf)`` weight; both the copy and the skinny GEMMs ran far below the
core's speed. Instead:

- the input is unfolded along frequency only: ``U[t, b, f, (c, j)] = x[t, b, c,
  f*sf + j]``, ``kt`` times less data than im2col;
- the ``kt`` time offsets of the kernel become columns of one weight matrix
  ``W_all[(c, j), (i, o)] = W[o, c, i, j]``, so one wide GEMM ``Z = U W_all`` gives
  every frame's response to every time offset;
- the output sums the responses along the diagonals: ``y[t] = sum_i Z[t + i, :, i]``.

The backward pass mirrors it: ``dy`` is laid on the same diagonals (``DZ``), then
``dW_all = U^T DZ`` and ``dU = DZ W_all^T``, folded back along frequency. The GEMMs are
wide (``kt * C_out`` = 352 columns for that layer), where BLAS runs near its peak. All
of it runs in slices of output frames of about ``CONV_CHUNK_BYTES``.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ...constants import CONV_CHUNK_BYTES
from ..numpy_ref.layers import _conv2d_backward, _conv2d_forward, im2col
from .layers import _SerialOrParallel

__all__ = ["col2im_add", "conv2d_backward", "conv2d_forward", "im2col"]


# --- im2col's inverse (strided convolutions) ------------------------------------


@_SerialOrParallel
def _col2im_kernel(patches, dxp, st, sf, t_start):
    # patches: (n_t, B, F', C, kt, kf); dxp: (Tp, B, C, Fp)
    n_t, B, F_out, C, kt, kf = patches.shape
    # Each batch entry writes only its own slice of dxp, so prange over B has no races.
    for b in prange(B):
        for t in range(n_t):
            t0 = (t_start + t) * st
            for f in range(F_out):
                f0 = f * sf
                for c in range(C):
                    for i in range(kt):
                        for j in range(kf):
                            dxp[t0 + i, b, c, f0 + j] += patches[t, b, f, c, i, j]


def col2im_add(dcols, dxp, kt, kf, st, sf, t_start):
    """Scatter-add patch gradients onto ``dxp`` in place; see the numpy_ref spec."""
    _, B, C, Fp = dxp.shape
    F_out = (Fp - kf) // sf + 1
    n_t = dcols.shape[0] // (B * F_out)
    patches = dcols.reshape(n_t, B, F_out, C, kt, kf)
    _col2im_kernel(patches.size, patches, dxp, int(st), int(sf), int(t_start))


# --- unfolding along frequency only (time stride 1) -----------------------------


@_SerialOrParallel
def _unfold_frequency_kernel(xp, t_start, sf, U):
    # xp: (Tp, B, C, Fp); U: (n, B, F', C, kf) <- xp[t_start + t, b, c, f*sf + j]
    n, B, F_out, C, kf = U.shape
    for tb in prange(n * B):
        t = tb // B
        b = tb - t * B
        for f in range(F_out):
            f0 = f * sf
            for c in range(C):
                for j in range(kf):
                    U[t, b, f, c, j] = xp[t_start + t, b, c, f0 + j]


@_SerialOrParallel
def _fold_frequency_kernel(dU, t_start, sf, dxp):
    # dxp[t_start + t, b, c, f*sf + j] += dU[t, b, f, c, j]; frequencies overlap
    # within a frame, so each (t, b) is one work item and owns its frame.
    n, B, F_out, C, kf = dU.shape
    for tb in prange(n * B):
        t = tb // B
        b = tb - t * B
        for f in range(F_out):
            f0 = f * sf
            for c in range(C):
                for j in range(kf):
                    dxp[t_start + t, b, c, f0 + j] += dU[t, b, f, c, j]


def _unfold_frequency(xp, t_start, t_stop, kf, sf):
    """U (n, B*F', C*kf) for input frames ``t_start <= t < t_stop``."""
    _, B, C, Fp = xp.shape
    F_out = (Fp - kf) // sf + 1
    U = np.empty((t_stop - t_start, B, F_out, C, kf), dtype=xp.dtype)
    _unfold_frequency_kernel(U.size, xp, int(t_start), int(sf), U)
    return U.reshape(t_stop - t_start, B * F_out, C * kf)


def _stacked_offsets(W):
    """W (C_out, C, kt, kf) -> W_all (C*kf, kt*C_out), ``W_all[(c, j), (i, o)] =
    W[o, c, i, j]``."""
    C_out, C, kt, kf = W.shape
    return np.ascontiguousarray(W.transpose(1, 3, 2, 0).reshape(C * kf, kt * C_out))


def _frames_per_slice(B, F_out, kt, C_out, itemsize):
    """Output frames per slice, so that ``Z`` (the widest array) is ~CONV_CHUNK_BYTES
    bytes."""
    return max(1, CONV_CHUNK_BYTES // max(1, B * F_out * kt * C_out * itemsize))


def _shifted_forward(xp, W, b, sf):
    """The time-stride-1 convolution (module docstring): y (T', B, C_out, F')."""
    Tp, B, C, Fp = xp.shape
    C_out, _, kt, kf = W.shape
    T_out = Tp - kt + 1
    F_out = (Fp - kf) // sf + 1
    W_all = _stacked_offsets(W)
    y = np.empty((T_out, B * F_out, C_out), dtype=xp.dtype)
    step = _frames_per_slice(B, F_out, kt, C_out, xp.dtype.itemsize)
    for t0 in range(0, T_out, step):
        t1 = min(T_out, t0 + step)
        U = _unfold_frequency(xp, t0, t1 + kt - 1, kf, sf)
        Z = (U.reshape(-1, C * kf) @ W_all).reshape(U.shape[0], B * F_out, kt, C_out)
        out = y[t0:t1]
        np.copyto(out, Z[0 : t1 - t0, :, 0])
        for i in range(1, kt):  # output t sums Z[t + i, :, i] over the time offsets
            out += Z[i : i + t1 - t0, :, i]
    y += b
    return np.ascontiguousarray(y.reshape(T_out, B, F_out, C_out).transpose(0, 1, 3, 2))


def _shifted_backward(dy, xp, W, sf, need_dx):
    """Gradients of :func:`_shifted_forward`: dxp (or None), dW, db."""
    Tp, B, C, Fp = xp.shape
    C_out, _, kt, kf = W.shape
    T_out, _, _, F_out = dy.shape
    W_all = _stacked_offsets(W)
    dy_rows = np.ascontiguousarray(dy.transpose(0, 1, 3, 2)).reshape(
        T_out, B * F_out, C_out
    )
    db = dy.sum(axis=(0, 1, 3))
    dW_all = np.zeros_like(W_all)
    dxp = np.zeros_like(xp) if need_dx else None
    step = _frames_per_slice(B, F_out, kt, C_out, xp.dtype.itemsize)
    for t0 in range(0, T_out, step):
        t1 = min(T_out, t0 + step)
        n_in = t1 - t0 + kt - 1
        # DZ[t + i, :, i] = dy[t]: every (frame, offset) cell holds at most one value
        DZ = np.zeros((n_in, B * F_out, kt, C_out), dtype=dy.dtype)
        for i in range(kt):
            DZ[i : i + t1 - t0, :, i] = dy_rows[t0:t1]
        DZ = DZ.reshape(-1, kt * C_out)
        U = _unfold_frequency(xp, t0, t0 + n_in, kf, sf)
        dW_all += U.reshape(-1, C * kf).T @ DZ
        if need_dx:
            dU = (DZ @ W_all.T).reshape(n_in, B, F_out, C, kf)
            _fold_frequency_kernel(dU.size, dU, int(t0), int(sf), dxp)
    dW = np.ascontiguousarray(dW_all.reshape(C, kf, kt, C_out).transpose(3, 0, 2, 1))
    return dxp, dW, db


def conv2d_forward(xp, W, b, st, sf):
    """2D convolution; see the numpy_ref spec. Time stride 1 goes the shifted-GEMM way
    (module docstring), other strides through im2col."""
    if int(st) == 1:
        return _shifted_forward(xp, W, b, int(sf))
    return _conv2d_forward(xp, W, b, int(st), int(sf), im2col)


def conv2d_backward(dy, xp, W, st, sf, need_dx=True):
    """Gradients of the convolution; see the numpy_ref spec."""
    if int(st) == 1:
        return _shifted_backward(dy, xp, W, int(sf), need_dx)
    return _conv2d_backward(dy, xp, W, int(st), int(sf), im2col, col2im_add, need_dx)
