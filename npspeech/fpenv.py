"""Flush-to-zero: subnormal floats read and written as zero while training.

A subnormal (denormal) float is one below the dtype's smallest normal number
(``np.finfo(np.float32).tiny``, 1.2e-38). On x86 every arithmetic operation that reads
or produces one takes a microcode assist, about 100 times a normal operation. A trained
network makes many of them: saturated LSTM gates (``sigmoid(-90)`` is subnormal in
float32), and the products of tiny gradients inside every backward GEMM. On this
project's machine the same batches ran 2.6 times slower after twelve epochs of training
than at its start, the backward pass 4 times slower, before any of this was flushed.

The processors have a switch for it, per thread: x86's MXCSR has FTZ (flush results
to zero) and DAZ (read subnormal inputs as zero); AArch64's FPCR has FZ (both).
TensorFlow, which DeepSpeech trained with, turns them on in every thread that runs its
kernels; :func:`flush_subnormals` does the same around a training step, for the calling
thread and Numba's worker threads, and puts the previous setting back afterwards. It
changes results only where a value falls below ``tiny``, far below any tolerance.

What it does not reach: BLAS's own worker threads (OpenBLAS starts them when NumPy is
imported and offers no hook into them). With one BLAS thread the products run in the
calling thread and are covered. The recurrent kernels also flush what they store in
software (``backends/numba_cpu/rnn.py``), which is portable and reaches every thread.
On processors other than x86-64 and AArch64 :func:`flush_subnormals` changes nothing.
"""

from __future__ import annotations

import platform
from collections.abc import Iterator
from contextlib import contextmanager

import numba
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["SUPPORTED", "flush_subnormals", "flushing"]

_MACHINE = platform.machine().lower()
_X86_64 = _MACHINE in ("x86_64", "amd64")
_ARM64 = _MACHINE in ("aarch64", "arm64")
SUPPORTED = _X86_64 or _ARM64

# x86 MXCSR: bit 15 FTZ (flush-to-zero), bit 6 DAZ (denormals-are-zero)
_X86_FLUSH_BITS = (1 << 15) | (1 << 6)
# AArch64 FPCR: bit 24 FZ (flush-to-zero, inputs and results)
_ARM64_FLUSH_BITS = 1 << 24
_FLUSH_BITS = _X86_FLUSH_BITS if _X86_64 else _ARM64_FLUSH_BITS if _ARM64 else 0

_I8_POINTER = ir.IntType(8).as_pointer()


@intrinsic
def _read_control(typingctx):  # pragma: no cover - jit
    """The calling thread's floating-point control register (0 where unsupported)."""

    def codegen(context, builder, signature, args):
        module = builder.module
        if _X86_64:
            slot = cgutils.alloca_once(builder, ir.IntType(32))
            store = cgutils.get_or_insert_function(
                module,
                ir.FunctionType(ir.VoidType(), [_I8_POINTER]),
                "llvm.x86.sse.stmxcsr",
            )
            builder.call(store, [builder.bitcast(slot, _I8_POINTER)])
            return builder.zext(builder.load(slot), ir.IntType(64))
        if _ARM64:
            read = cgutils.get_or_insert_function(
                module, ir.FunctionType(ir.IntType(64), []), "llvm.aarch64.get.fpcr"
            )
            return builder.call(read, [])
        return ir.Constant(ir.IntType(64), 0)

    return types.int64(), codegen


@intrinsic
def _write_control(typingctx, value):  # pragma: no cover - jit
    """Set the calling thread's floating-point control register (no-op elsewhere)."""

    def codegen(context, builder, signature, args):
        module = builder.module
        if _X86_64:
            slot = cgutils.alloca_once(builder, ir.IntType(32))
            builder.store(builder.trunc(args[0], ir.IntType(32)), slot)
            load = cgutils.get_or_insert_function(
                module,
                ir.FunctionType(ir.VoidType(), [_I8_POINTER]),
                "llvm.x86.sse.ldmxcsr",
            )
            builder.call(load, [builder.bitcast(slot, _I8_POINTER)])
        elif _ARM64:
            write = cgutils.get_or_insert_function(
                module,
                ir.FunctionType(ir.VoidType(), [ir.IntType(64)]),
                "llvm.aarch64.set.fpcr",
            )
            builder.call(write, [args[0]])
        return context.get_dummy_value()

    return types.void(types.int64), codegen


@njit
def _set_flush(on):  # pragma: no cover - jit
    """Turn flushing on or off in the calling thread; return whether it was on."""
    control = _read_control()
    was_on = (control & _FLUSH_BITS) == _FLUSH_BITS and _FLUSH_BITS != 0
    _write_control(control | _FLUSH_BITS if on else control & ~_FLUSH_BITS)
    return was_on


@njit(parallel=True)
def _set_flush_in_workers(on, threads):  # pragma: no cover - jit
    # Numba splits a prange statically into one run per thread: with as many
    # iterations as threads, every worker runs exactly one.
    for _ in prange(threads):
        _set_flush(on)


def flush_subnormals(on: bool) -> bool:
    """Turn flush-to-zero on or off for this thread and Numba's workers.

    Returns whether it was on in this thread before. Where the processor has no such
    switch (see :data:`SUPPORTED`) nothing changes and the result is False.
    """
    if not SUPPORTED:
        return False
    was_on = bool(_set_flush(on))
    # every launched worker, not only the ones numba.set_num_threads now allows
    limit = numba.get_num_threads()
    launched = numba.config.NUMBA_NUM_THREADS
    if launched > 1:
        numba.set_num_threads(launched)
        try:
            _set_flush_in_workers(on, launched)
        finally:
            numba.set_num_threads(limit)
    return was_on


@contextmanager
def flushing(on: bool = True) -> Iterator[None]:
    """``with flushing(): ...`` runs the block with flush-to-zero on (or off), then
    restores this thread's previous setting (and gives the workers the same)."""
    was_on = flush_subnormals(on)
    try:
        yield
    finally:
        if was_on != on:
            flush_subnormals(was_on)
