"""Compiled-on-first-use CUDA kernels, each with a NumPy twin.

Every element-wise or raw kernel of this backend is declared here through
:func:`elementwise` or :func:`raw`, which record its NumPy twin under the kernel's
name in :data:`TWINS` and build the CuPy kernel on its first call (so importing the
backend compiles nothing). A twin computes what the CUDA body computes, from the same
arguments in the same order, writing its outputs into the arrays passed for them: the
CPU tests run the whole backend against a stand-in ``cupy`` module backed by NumPy
whose ``ElementwiseKernel`` and ``RawKernel`` call the twin of the same name, so the
orchestration around each kernel (shapes, padding, state carried between steps, the
GEMMs) is tested without a GPU. The CUDA sources themselves only run on a device;
``tests/test_cupy_backend.py`` compares them with the NumPy reference there.
"""

from __future__ import annotations

from collections.abc import Callable

from ._runtime import cupy

#: kernel name -> NumPy twin
TWINS: dict[str, Callable] = {}


class _Lazy:
    """A CuPy kernel built on its first call."""

    def __init__(self, build: Callable, name: str):
        self._build = build
        self._kernel = None
        self.name = name

    def __call__(self, *args, **kwargs):
        if self._kernel is None:
            self._kernel = self._build()
        return self._kernel(*args, **kwargs)


def elementwise(in_params: str, out_params: str, body: str, name: str, twin):
    """A ``cupy.ElementwiseKernel``; every call passes all outputs explicitly."""
    TWINS[name] = twin
    return _Lazy(
        lambda: cupy().ElementwiseKernel(in_params, out_params, body, name), name
    )


def raw(source: str, name: str, twin):
    """A ``cupy.RawKernel`` launched as ``kernel(grid, block, args)``."""
    TWINS[name] = twin
    return _Lazy(lambda: cupy().RawKernel(source, name), name)
