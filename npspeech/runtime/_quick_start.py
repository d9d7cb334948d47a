"""How much work a process runs on the NumPy reference before it pays for Numba.

The compiled kernels cost a fixed price once per process, before their first frame:
importing Numba and loading every kernel's machine code from Numba's disk cache (its
first cached load in a process also builds Numba's typing and lowering registries).
On the project machine that is ~0.8 s of the network's own (import 0.3 s, packing and
loading 0.5 s) and ~1.1 s of a warm ``npspeech decode``, with the features' and
log-softmax's kernels. The NumPy reference pays nothing up front but runs slower:
~1.0-1.2e-10 s more per frame per weight (DeepSpeech of width 384 on 5 s of audio:
0.078 s against 0.023 s; width 2048: 2.03 s against 0.91 s; one thread idle).

So a network whose kernels are left to the default (numba) runs its inputs on the
reference, and its caller the features and log-softmax too (see
:meth:`npspeech.runtime.InferenceNetwork.reference_only`; a stream asks chunk by
chunk, :mod:`npspeech.stream`), while the work this
process has run there, frames times weights summed over its inputs, stays within
:data:`BUDGET`: about what the fixed price buys. That is the rent-or-buy rule: a
process never pays more than about twice what the better choice in hindsight would
have cost. The first input that would take the total past the budget imports Numba,
and the process keeps the compiled kernels from then on. In audio, the budget is
~90 s at width 384 and ~3.4 s at width 2048, so a short decode never imports Numba,
while a long file, a server that has transcribed a few minutes, and training do.
"""

from __future__ import annotations

import threading

__all__ = ["BUDGET", "fits", "claim"]

#: Frames times weights a process may run on the reference before it switches to the
#: compiled kernels: ~1 s of fixed price over ~1.1e-10 s per unit (module docstring).
BUDGET = 8e9

_lock = threading.Lock()
_spent = 0.0
_closed = False  # the budget was exceeded once: compiled kernels for good


def fits(work: float) -> bool:
    """True when an input of ``work`` (frames times weights) would run on the
    reference now; charges nothing."""
    return not _closed and _spent + work <= BUDGET


def claim(work: float) -> bool:
    """Charge ``work`` to the budget and return True when it fits; otherwise close the
    budget for this process (every later call returns False) and return False."""
    global _spent, _closed
    with _lock:
        if fits(work):
            _spent += work
            return True
        _closed = True
        return False
