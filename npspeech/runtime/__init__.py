"""The inference-only network: no backward caches, packed weights, streaming state.

:class:`InferenceNetwork` wraps a :class:`npspeech.models.Network` for inference. It
prepares the weights once (batch norms folded into the adjacent linear layers, the
recurrent weights packed in the layout its kernels read) and runs either a padded batch
at once (:meth:`InferenceNetwork.forward`, the result of ``models.forward(...,
training=False)``) or a single stream chunk by chunk
(:meth:`InferenceNetwork.forward_chunk` with a :class:`StreamState`), holding back only
the future frames each layer needs. A model from ``npspeech quantize`` runs its weight
matrices as int8 (per output channel, float32 activations); ``weights="int8"`` does the
same for any network. A network left to the default backend runs short inputs on the
NumPy reference, without importing Numba, until the process has run enough work to
pay for loading the compiled kernels, and runs the reference while those kernels are
not in Numba's cache yet, compiling them in the background for later runs (see
:mod:`.network`).
"""

from __future__ import annotations

from .network import InferenceNetwork, StreamState

__all__ = ["InferenceNetwork", "StreamState"]
