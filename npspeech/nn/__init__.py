"""Neural-network layers as forward/backward pairs over NumPy arrays.

Batches are time-major ``(T, B, F)`` with ``lengths (B,) int32``; padded frames are zero
and change no result. Layers with parameters (``dense``, ``conv``, ``norm``,
``lookahead``, ``rnn``) provide ``forward(params, x, ...) -> (y, cache)`` and
``backward(params, dy, cache) -> (dx, grads)``; parameter-free ones (``activations``,
``dropout``) provide ``xxx_forward(x, ...) -> (y, cache)`` and
``xxx_backward(dy, cache) -> dx``.
Every function takes ``backend=`` (a name or module) and calls that backend's kernels.
Initializers are in :mod:`npspeech.nn.init`.
"""
