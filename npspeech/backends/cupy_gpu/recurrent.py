"""A unidirectional recurrent layer on device arrays, for the device-resident training
step.

:func:`npspeech.nn.rnn.forward` runs on device arrays as well (it allocates on the
device of its input) and is what DeepSpeech2's bidirectional layers use; this is the
lean path of DeepSpeech's LSTM layer (one direction, zero initial state, the final
state unused, no validation): zero initial states allocated on the device, the
backend's ``*_forward`` and ``*_backward`` kernels called with device arrays, so
nothing crosses to the host. Its CPU test compares it with
:func:`npspeech.nn.rnn.forward`/``backward`` through the NumPy stand-in for CuPy.

Shape legend: T frames, B batch, F input features, H hidden units, G gates (1 rnn,
4 lstm, 3 gru).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ._runtime import cupy
from .rnn import (
    gru_backward,
    gru_forward,
    lstm_backward,
    lstm_forward,
    rnn_backward,
    rnn_forward,
)

PARAM_NAMES = ("W_ih", "W_hh", "b_ih", "b_hh")


@dataclasses.dataclass
class RecurrentCache:
    """What :func:`backward` needs from :func:`forward` (device arrays).

    Attributes
    ----------
    kind : str
        ``"rnn"``, ``"lstm"`` or ``"gru"``.
    x : (T, B, F) the layer's input
    lengths : (B,) int32 valid frames per sequence
    h0 : (B, H) zero initial hidden state
    c0 : (B, H) zero initial cell state (LSTM) or None
    y : (T, B, H) outputs, zero on padded frames
    gates : (T, B, G*H) gate activations (LSTM, GRU) or None (RNN)
    extra : (T, B, H) cell states (LSTM), ``h W_hn + b_hn`` (GRU) or None (RNN)
    ceiling : float
        The vanilla RNN's ReLU clip.
    """

    kind: str
    x: Any
    lengths: Any
    h0: Any
    c0: Any
    y: Any
    gates: Any
    extra: Any
    ceiling: float


def forward(params, x, lengths, kind: str, ceiling: float = 20.0):
    """One direction over a padded device batch from a zero state.

    Parameters
    ----------
    params : dict with ``W_ih (F, G*H)``, ``W_hh (H, G*H)``, ``b_ih``, ``b_hh (G*H,)``,
        device arrays of ``x``'s dtype
    x : (T, B, F) device float32/float64, C-contiguous
    lengths : (B,) device int32
    kind : ``"rnn"``, ``"lstm"`` or ``"gru"``
    ceiling : the vanilla RNN's ReLU clip

    Returns
    -------
    y : (T, B, H) device array, x's dtype, zero on padded frames
    cache : RecurrentCache
    """
    xp = cupy()
    W_ih, W_hh, b_ih, b_hh = (xp.ascontiguousarray(params[n]) for n in PARAM_NAMES)
    B, H = x.shape[1], W_hh.shape[0]
    h0 = xp.zeros((B, H), dtype=x.dtype)
    if kind == "lstm":
        c0 = xp.zeros((B, H), dtype=x.dtype)
        y, gates, cells, _, _ = lstm_forward(x, lengths, W_ih, W_hh, b_ih, b_hh, h0, c0)
        return y, RecurrentCache(kind, x, lengths, h0, c0, y, gates, cells, ceiling)
    if kind == "gru":
        y, gates, hn, _ = gru_forward(x, lengths, W_ih, W_hh, b_ih, b_hh, h0)
        return y, RecurrentCache(kind, x, lengths, h0, None, y, gates, hn, ceiling)
    y, _ = rnn_forward(x, lengths, W_ih, W_hh, b_ih, b_hh, h0, ceiling)
    return y, RecurrentCache(kind, x, lengths, h0, None, y, None, None, ceiling)


def backward(params, dy, cache: RecurrentCache):
    """Backpropagation through time of :func:`forward`.

    Parameters
    ----------
    params : the parameters given to :func:`forward`
    dy : (T, B, H) device array, the gradient of ``y``
    cache : RecurrentCache

    Returns
    -------
    dx : (T, B, F) device array, zero on padded frames
    grads : dict of device arrays with the keys and shapes of ``params``
    """
    xp = cupy()
    W_ih = xp.ascontiguousarray(params["W_ih"])
    W_hh = xp.ascontiguousarray(params["W_hh"])
    dy = xp.ascontiguousarray(dy, dtype=cache.x.dtype)
    zeros = xp.zeros_like(cache.h0)  # the final state feeds nothing
    c = cache
    if c.kind == "lstm":
        *grads, _, _ = lstm_backward(
            dy, zeros, zeros, c.x, c.lengths, W_ih, W_hh, c.h0, c.c0, c.y, c.gates,
            c.extra,
        )  # fmt: skip
    elif c.kind == "gru":
        *grads, _ = gru_backward(
            dy, zeros, c.x, c.lengths, W_ih, W_hh, c.h0, c.y, c.gates, c.extra
        )
    else:
        *grads, _ = rnn_backward(
            dy, zeros, c.x, c.lengths, W_ih, W_hh, c.h0, c.y, c.ceiling
        )
    return grads[0], dict(zip(PARAM_NAMES, grads[1:], strict=True))
