"""The NumPy reference backend: readable kernels that define what the others
must compute.

Kernels live in one module per area and are re-exported here; each area module lists its
kernels in ``__all__``.
"""

from .ctc import *  # noqa: F403
from .features import *  # noqa: F403
from .layers import *  # noqa: F403
from .rnn import *  # noqa: F403

NAME = "numpy"
