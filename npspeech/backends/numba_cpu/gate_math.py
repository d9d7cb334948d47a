"""The recurrent layers' gate nonlinearities, as Numba overloads that vectorise.

``sigmoid(a)`` and ``tanh(a)`` are plain-Python stubs (usable with
``NUMBA_DISABLE_JIT=1``); inside ``@njit`` code their overloads below take over:

- float32: branch-free float32 arithmetic that LLVM vectorises (16 lanes on AVX-512,
  8 on AVX2, 4 on NEON). This Numba has no vector math library, so ``math.exp``
  compiles to a scalar libm call that keeps every gate loop scalar: on float32 data the
  gate math then cost two thirds of the recurrent product. Accuracy, measured over the
  inputs of ``tests/test_numba_rnn_gates.py``: within 3 float32 ulp of the exact value
  (libm's own float32 paths are within ~2), far inside every tolerance the layers are
  tested to (1e-4 relative against PyTorch);
- float64 (gradient checks): libm, exact to float64 rounding.

``exp(x) = 2**n exp(r)`` with ``n = round(x / ln 2)`` and ``r = x - n ln 2``, so
that ``|r| <= ln(2) / 2``: ``ln 2`` is split in two parts (Cody and Waite), the first
with few enough significant bits that ``n * LN2_HI`` and ``x - n * LN2_HI`` are exact;
``exp(r) = 1 + expm1(r)`` with ``expm1(r)`` a Taylor polynomial, and ``2**n`` is built
from its IEEE-754 bits.

tanh takes ``expm1`` rather than ``exp``: ``tanh(t) = -u / (2 + u)`` with
``u = expm1(-2t)``, ``t = |a|``. ``1 - exp(-2t)`` would cancel for small ``t``;
``expm1(x) = 2**n expm1(r) + (2**n - 1)`` does not (``n = 0`` there, and ``expm1(r)``
is a polynomial in ``r`` with no constant term).

``normal_or_zero(out, v)`` rounds ``v`` to ``out``'s dtype and flushes it to zero below
the dtype's smallest normal number (see ``rnn.py``'s module docstring for why).
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload
from numba.np.numpy_support import as_dtype

__all__ = ["sigmoid", "tanh", "normal_or_zero"]

_F32 = np.float32
_ONE = _F32(1.0)
_TWO = _F32(2.0)
_HALF = _F32(0.5)
# exp(x) is clamped to x in [-87, 88]: exp(88) = 1.7e38 is below float32's largest
# value, exp(-87) = 1.6e-38 above its smallest normal one, and 2**n stays a normal
# number (n in [-126, 127]). Sigmoid and tanh are saturated (or flushed to zero) well
# inside that range.
_EXP_LOW = _F32(-87.0)
_EXP_HIGH = _F32(88.0)
# tanh(t) rounds to 1 in float32 from t ~ 9.01 on: expm1(-2t) is clamped at -20.
_EXPM1_LOW = _F32(-20.0)
_LOG2E = _F32(1.4426950408889634)  # 1 / ln 2
# ln 2 = _LN2_HI + _LN2_LO; _LN2_HI = 355 / 512 has 9 significant bits, so n * _LN2_HI
# (|n| <= 127) is exact in float32
_LN2_HI = _F32(0.693359375)
_LN2_LO = _F32(-2.1219444005469057e-4)
_FLOAT32_EXPONENT_BIAS = np.int32(127)
_FLOAT32_MANTISSA_BITS = np.int32(23)
# 1 / k! for expm1's Taylor polynomial of degree 8: on |r| <= ln(2) / 2 it leaves
# r**9 / 9! < 6e-10 of r (one float32 ulp is 6e-8 to 1.2e-7 relative).
_C2, _C3, _C4, _C5, _C6, _C7, _C8 = (_F32(1.0 / math.factorial(k)) for k in range(2, 9))


@intrinsic
def _bits_as_float32(typingctx, bits):  # pragma: no cover - jit
    """The float32 whose IEEE-754 bits are the int32 ``bits`` (an LLVM bitcast)."""
    signature = types.float32(types.int32)

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.FloatType())

    return signature, codegen


@njit(cache=True, fastmath={"contract"})
def _scale_and_expm1(x):  # pragma: no cover - jit
    """(2**n, expm1(r)) with ``x = n ln 2 + r``, ``|r| <= ln(2) / 2``, so that
    ``exp(x) = 2**n (1 + expm1(r))``; float32 x, clamped by the caller so that 2**n is
    a normal number."""
    n = np.floor(x * _LOG2E + _HALF)  # float32, an integer value
    r = (x - n * _LN2_HI) - n * _LN2_LO
    q = _C8  # Horner's rule: expm1(r) = r (1 + r/2! + ... + r**7/8!)
    q = q * r + _C7
    q = q * r + _C6
    q = q * r + _C5
    q = q * r + _C4
    q = q * r + _C3
    q = q * r + _C2
    q = q * r + _ONE
    q = q * r
    bits = (np.int32(n) + _FLOAT32_EXPONENT_BIAS) << _FLOAT32_MANTISSA_BITS
    return _bits_as_float32(bits), q


@njit(cache=True, fastmath={"contract"})
def _exp_float32(x):  # pragma: no cover - jit
    """exp(x) for float32 x, branch-free (selects, not branches; NaN stays NaN)."""
    x = _EXP_LOW if x < _EXP_LOW else x
    x = _EXP_HIGH if x > _EXP_HIGH else x
    scale, q = _scale_and_expm1(x)
    return scale * q + scale


@njit(cache=True, fastmath={"contract"})
def _tanh_float32(a):  # pragma: no cover - jit
    """tanh(a) for float32 a through expm1 (see the module docstring)."""
    t = abs(a)
    x = -_TWO * t
    x = _EXPM1_LOW if x < _EXPM1_LOW else x
    scale, q = _scale_and_expm1(x)
    # expm1(x); 2**n - 1 is exact down to n = -24 and rounds to -1 below, where tanh is
    # within an ulp of 1
    u = scale * q + (scale - _ONE)
    magnitude = -u / (_TWO + u)
    return -magnitude if a < 0 else magnitude


def sigmoid(a):  # pragma: no cover - jit code uses the overload below
    return 1.0 / (1.0 + math.exp(-a))


def tanh(a):  # pragma: no cover - jit code uses the overload below
    return math.tanh(a)


def normal_or_zero(out, v):  # pragma: no cover - jit code uses the overload below
    """``v`` rounded to ``out``'s dtype, or zero where that is subnormal."""
    w = out.dtype.type(v)
    return w if not abs(w) < np.finfo(out.dtype).tiny else out.dtype.type(0)


def _is_float32(a) -> bool:
    return isinstance(a, types.Float) and a.bitwidth == 32


@overload(sigmoid, jit_options={"cache": True, "error_model": "numpy"})
def _sigmoid_overload(a):  # pragma: no cover - jit
    """The logistic function, in ``a``'s precision."""
    if _is_float32(a):
        return lambda a: _ONE / (_ONE + _exp_float32(-a))
    return lambda a: 1.0 / (1.0 + math.exp(-a))


@overload(tanh, jit_options={"cache": True, "error_model": "numpy"})
def _tanh_overload(a):  # pragma: no cover - jit
    """tanh, in ``a``'s precision."""
    if _is_float32(a):
        return lambda a: _tanh_float32(a)
    return lambda a: math.tanh(a)


@overload(normal_or_zero, jit_options={"cache": True})
def _normal_or_zero_overload(out, v):  # pragma: no cover - jit
    """A select, so loops that store through it still vectorise; NaN passes through."""
    dtype = as_dtype(out.dtype)
    tiny, zero = dtype.type(np.finfo(dtype).tiny), dtype.type(0)
    if dtype == np.float32:
        return lambda out, v: np.float32(v) if not abs(np.float32(v)) < tiny else zero
    return lambda out, v: v if not abs(v) < tiny else zero
