"""The Numba CPU backend: JIT kernels with the same names and signatures as numpy_ref.

Kernels live in one module per area and are re-exported here; each area module lists its
kernels in ``__all__``.
"""

from ... import jit_notice
from .conv import *  # noqa: F403
from .ctc import *  # noqa: F403
from .features import *  # noqa: F403
from .layers import *  # noqa: F403
from .rnn import *  # noqa: F403

NAME = "numba"

jit_notice.numba_imported()  # the compile notice, when it was asked for before Numba
