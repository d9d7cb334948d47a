"""Idle worker threads of the two pools a training step uses: asleep soon, not spinning.

A training step alternates BLAS products (NumPy's OpenBLAS, with its own worker threads)
and Numba kernels (Numba's OpenMP threads, GNU libgomp on Linux) on the same cores.
Both pools keep their idle workers spinning for a while after a call, in case another
comes at once: OpenBLAS for ``2**28`` processor cycles (about 0.1 s at 2.5 GHz),
libgomp for 300,000 turns of a ``pause`` loop (milliseconds on processors whose
``pause`` takes ~140 cycles). In a step, the call that comes next is the other pool's,
which then shares its cores with the spinning workers. On the 2-core project machine a
clipped ReLU over 4800 x 512 values took 5 ms right after a product against 1 ms in a
loop of its own, and a DeepSpeech-shaped training step (H=512, 2 threads) ran 6.6%
faster (95% interval 4.5-8.8%) with OpenBLAS's wait cut short, then 4.0% faster again
(1.2-6.8%) with libgomp's too (steps in turns; ``benchmarks/RESULTS.md``).

Both libraries read the length of the wait from the environment once, when they are
loaded: OpenBLAS ``OPENBLAS_THREAD_TIMEOUT`` (``2**n`` cycles, n from 4 to 30) when
NumPy is first imported, libgomp ``GOMP_SPINCOUNT`` (turns) when Numba first starts its
threads. :func:`set_defaults` sets them when ``npspeech`` is imported, which imports
nothing that loads either. That is in time for the command line and for scripts that
import npspeech before NumPy; a script that imports NumPy first exports
``OPENBLAS_THREAD_TIMEOUT=4`` itself. Values already in the environment are kept, and a
NumPy built on another BLAS, or another OpenMP runtime, ignores them. Waking a sleeping
worker costs microseconds, against products and kernels of milliseconds; OpenBLAS runs
small products on the calling thread alone anyway.
"""

from __future__ import annotations

import os

__all__ = ["DEFAULTS", "set_defaults"]

#: Environment defaults: OpenBLAS's shortest wait (2**4 cycles), libgomp's 10,000 turns
#: (tens of microseconds; 300,000 is its default).
DEFAULTS = {"OPENBLAS_THREAD_TIMEOUT": "4", "GOMP_SPINCOUNT": "10000"}


def set_defaults() -> None:
    """Put each of :data:`DEFAULTS` into ``os.environ`` unless it is set already."""
    for name, value in DEFAULTS.items():
        os.environ.setdefault(name, value)
