"""The CuPy backend: the kernel API of :mod:`npspeech.backends.numpy_ref` on an NVIDIA
GPU.

Importing this package imports CuPy and checks for a CUDA device first, raising
:class:`~._runtime.BackendUnavailable` (an ImportError) that says which of the two is
missing; nothing else in npspeech imports it (``get_backend("cupy")`` does, lazily).
Kernels accept CuPy or NumPy arrays and return results where their inputs were
(:mod:`._runtime`); :mod:`.train_step` holds the device-resident pieces of a training
step (parameters and optimizer state kept on the device, scalars back per step).

Which code runs where: the element-wise and raw CUDA kernels of :mod:`._compile`'s
registry (clip, bias-and-clip, clip gradient, dropout, Adam, the RNN/LSTM/GRU step
kernels forward and backward, the one-launch LSTM/GRU forward steps of
:mod:`.rnn_fused`, the CTC alpha/beta and occupancy kernels) only run on a device;
everything around them is CuPy array code that the CPU tests also run against a NumPy
stand-in for ``cupy`` with those kernels' NumPy twins (the one-launch steps' CUDA
sources also run on the CPU there, built with the host C++ compiler).
"""

from ._runtime import load_cupy

load_cupy()

from .ctc import *  # noqa: E402, F403
from .features import *  # noqa: E402, F403
from .layers import *  # noqa: E402, F403
from .rnn import *  # noqa: E402, F403

NAME = "cupy"
