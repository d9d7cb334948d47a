"""Recurrent layers: vanilla RNN (ReLU clipped at 20), LSTM and GRU, uni- or
bidirectional, with backpropagation through time.

Shape legend: T frames, B batch, F input features, H hidden units, G gates per kind
(``rnn`` 1, ``lstm`` 4 in order i, f, g, o, ``gru`` 3 in order r, z, n). Batches are
time-major ``x (T, B, F)`` with ``lengths (B,)``; frames ``t >= lengths[b]`` leave
sequence ``b``'s state untouched, give zero output and zero input gradient.

Parameters follow PyTorch's names with the affine convention ``x @ W``: per direction
``W_ih (F, G*H)``, ``W_hh (H, G*H)``, ``b_ih (G*H,)``, ``b_hh (G*H,)``; the backward
direction's keys end in ``_reverse``. A bidirectional layer's backward direction starts
at each sequence's own end; its outputs are concatenated ``(T, B, 2H)`` or summed
``(T, B, H)`` (DeepSpeech 2 sums).

States: a direction's state is ``h (B, H)`` for ``rnn`` and ``gru`` and a pair
``(h, c)`` for ``lstm``. A bidirectional layer's state is the pair
``(forward_state, backward_state)``. ``cache.final_state`` holds the state after each
sequence's last frame, in the same format as ``initial_state``, so a unidirectional
layer can carry it across streaming chunks.

The numerics run in the kernels of a backend (``npspeech.backends``): ``rnn_forward``,
``lstm_forward``, ``gru_forward`` and their ``*_backward``, one direction each. The
layer is array-module agnostic: with CuPy inputs (and the cupy backend) everything
it allocates, its outputs and its cache stay on the device of ``x``.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from ..backends import get_backend
from ..errors import ConfigError
from ._checks import xp_of

#: gates per kind: the factor G in the fused weight shapes
GATES = {"rnn": 1, "lstm": 4, "gru": 3}
MERGE_MODES = ("concat", "sum")
#: the vanilla RNN's ReLU is clipped at 20 (DeepSpeech paper, Hannun et al. 2014)
RELU_CEILING = 20.0
PARAM_NAMES = ("W_ih", "W_hh", "b_ih", "b_hh")
REVERSE_SUFFIX = "_reverse"


@dataclass
class DirectionCache:
    """What one direction's backward pass needs.

    Attributes
    ----------
    x : (T, B, F) the direction's input (reversed within each length for the backward
        direction)
    h0 : (B, H) initial hidden state
    c0 : (B, H) initial cell state (LSTM) or None
    y : (T, B, H) the direction's outputs, in its own time order
    gates : (T, B, G*H) gate values after activation (LSTM, GRU) or None (RNN)
    extra : (T, B, H) cell states (LSTM), ``h W_hn + b_hn`` (GRU) or None (RNN)
    """

    x: np.ndarray
    h0: np.ndarray
    c0: np.ndarray | None
    y: np.ndarray
    gates: np.ndarray | None
    extra: np.ndarray | None


@dataclass
class RNNCache:
    """The forward pass's record for :func:`backward`, and the final state.

    Attributes
    ----------
    kind : "rnn", "lstm" or "gru"
    bidirectional : bool
    merge : "concat" or "sum"
    lengths : (B,) int64, on the device of x
    directions : one :class:`DirectionCache` per direction (forward first)
    final_state : the state after each sequence's last frame (see the module docstring)
    backend : the backend module the kernels came from
    input_dtype : the dtype of x
    """

    kind: str
    bidirectional: bool
    merge: str
    lengths: np.ndarray
    directions: list[DirectionCache]
    final_state: Any
    backend: ModuleType
    input_dtype: np.dtype


# --- parameters -----------------------------------------------------------------------


def _check_kind(kind: str) -> int:
    if kind not in GATES:
        raise ConfigError(f"kind must be one of {', '.join(GATES)}, got {kind!r}")
    return GATES[kind]


def _suffixes(bidirectional: bool) -> tuple[str, ...]:
    return ("", REVERSE_SUFFIX) if bidirectional else ("",)


def init(
    rng: np.random.Generator,
    kind: str,
    n_in: int,
    hidden_size: int,
    bidirectional: bool = False,
    forget_bias: float = 0.0,
    dtype: Any = np.float32,
) -> dict[str, np.ndarray]:
    """Parameters of a recurrent layer, drawn as PyTorch does: U(-1/sqrt(H), 1/sqrt(H)).

    Parameters
    ----------
    rng : the random generator
    kind : "rnn", "lstm" or "gru"
    n_in : F, input features
    hidden_size : H
    bidirectional : add the ``*_reverse`` parameters of a backward direction
    forget_bias : added to the forget gate's ``b_ih`` (LSTM only; DeepSpeech uses 1.0 in
        TensorFlow's LSTMBlockFusedCell, whose bias is initialised to zero otherwise)
    dtype : float32 or float64

    Returns
    -------
    dict with ``W_ih (F, G*H)``, ``W_hh (H, G*H)``, ``b_ih (G*H,)``, ``b_hh (G*H,)`` per
    direction.
    """
    G = _check_kind(kind)
    if n_in < 1 or hidden_size < 1:
        raise ConfigError(
            f"n_in and hidden_size must be >= 1, got {n_in}, {hidden_size}"
        )
    if forget_bias != 0.0 and kind != "lstm":
        raise ConfigError(f"forget_bias applies to kind 'lstm' only, got kind {kind!r}")
    H = hidden_size
    bound = 1.0 / np.sqrt(H)
    shapes = {
        "W_ih": (n_in, G * H),
        "W_hh": (H, G * H),
        "b_ih": (G * H,),
        "b_hh": (G * H,),
    }
    params = {}
    for suffix in _suffixes(bidirectional):
        for name, shape in shapes.items():
            params[name + suffix] = rng.uniform(-bound, bound, shape).astype(dtype)
        params["b_ih" + suffix][H : 2 * H] += forget_bias  # block f of i, f, g, o
    return params


# --- validation -----------------------------------------------------------------------


def _check_inputs(params, x, lengths, kind, bidirectional, merge):
    G = _check_kind(kind)
    if merge not in MERGE_MODES:
        raise ConfigError(
            f"merge must be one of {', '.join(MERGE_MODES)}, got {merge!r}"
        )
    xp = xp_of(x)
    x = xp.asarray(x)
    if x.ndim != 3:
        raise ConfigError(f"x must be (T, B, F), got shape {x.shape}")
    if x.dtype not in (np.float32, np.float64):
        raise ConfigError(f"x must be float32 or float64, got {x.dtype}")
    T, B, F = x.shape
    on_host = xp_of(lengths) is np
    lengths = xp.asarray(lengths)  # a host batch's lengths go along with a device x
    if lengths.shape != (B,) or not np.issubdtype(lengths.dtype, np.integer):
        raise ConfigError(
            f"lengths must be an integer array of shape ({B},), "
            f"got {lengths.dtype} {lengths.shape}"
        )
    # Device lengths are not read back (a stall per layer): the model checks a
    # device batch's lengths on the host once.
    if on_host and B and (lengths.min() < 0 or lengths.max() > T):
        raise ConfigError(
            f"lengths must lie in [0, {T}], got {lengths.min()}..{lengths.max()}"
        )
    if "W_hh" not in params or np.ndim(params["W_hh"]) != 2:
        raise ConfigError("params needs a 2-D 'W_hh' of shape (H, G*H)")
    H = params["W_hh"].shape[0]
    expected = {
        "W_ih": (F, G * H),
        "W_hh": (H, G * H),
        "b_ih": (G * H,),
        "b_hh": (G * H,),
    }
    for suffix in _suffixes(bidirectional):
        for name, shape in expected.items():
            key = name + suffix
            if key not in params:
                raise ConfigError(f"params lacks {key!r} for a {kind} layer")
            if params[key].shape != shape:
                raise ConfigError(
                    f"params[{key!r}] must have shape {shape}, got {params[key].shape}"
                )
            if params[key].dtype != x.dtype:
                raise ConfigError(
                    f"params[{key!r}] is {params[key].dtype} but x is {x.dtype}"
                )
    return xp.ascontiguousarray(x), lengths.astype(np.int64), H


def _direction_states(initial_state, kind, bidirectional, B, H, dtype, xp):
    """Each direction's initial state as (h0, c0) arrays of module ``xp``; c0 is None
    except for the LSTM."""
    n_directions = 2 if bidirectional else 1
    if initial_state is None:
        per_direction = [None] * n_directions
    elif bidirectional:
        if not isinstance(initial_state, (tuple, list)) or len(initial_state) != 2:
            raise ConfigError(
                "initial_state of a bidirectional layer must be a pair "
                "(forward_state, backward_state)"
            )
        per_direction = list(initial_state)
    else:
        per_direction = [initial_state]

    states = []
    for state in per_direction:
        if state is None:
            h0 = xp.zeros((B, H), dtype=dtype)
            c0 = xp.zeros((B, H), dtype=dtype) if kind == "lstm" else None
        elif kind == "lstm":
            if not isinstance(state, (tuple, list)) or len(state) != 2:
                raise ConfigError("an LSTM initial_state must be a pair (h, c)")
            h0, c0 = (_state_array(s, B, H, dtype, xp) for s in state)
        else:
            h0, c0 = _state_array(state, B, H, dtype, xp), None
        states.append((h0, c0))
    return states


def _state_array(state, B, H, dtype, xp):
    state = xp.asarray(state)
    if state.shape != (B, H):
        raise ConfigError(
            f"initial_state arrays must have shape ({B}, {H}), got {state.shape}"
        )
    return xp.ascontiguousarray(state, dtype=dtype)


def reverse_sequences(x: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Each sequence reversed within its own length; padded frames stay where they are.

    Parameters
    ----------
    x : (T, B, ...) any dtype, NumPy or CuPy
    lengths : (B,) int

    Returns
    -------
    (T, B, ...) a new C-contiguous array on the device of ``x``; applying the function
    twice gives ``x`` back.
    """
    xp = xp_of(x)
    lengths = xp.asarray(lengths)
    T, B = x.shape[:2]
    t = xp.arange(T)[:, None]  # (T, 1)
    source = xp.where(t < lengths, lengths - 1 - t, t)  # (T, B)
    return xp.ascontiguousarray(x[source, xp.arange(B)])


# --- forward / backward ---------------------------------------------------------------


def _run_direction(be, kind, x, lengths, params, suffix, h0, c0):
    """One direction forward in time: (y, final_state, DirectionCache)."""
    xp = xp_of(x)
    W_ih, W_hh, b_ih, b_hh = (
        xp.ascontiguousarray(params[n + suffix]) for n in PARAM_NAMES
    )
    if kind == "lstm":
        y, gates, cells, h_n, c_n = be.lstm_forward(
            x, lengths, W_ih, W_hh, b_ih, b_hh, h0, c0
        )
        return y, (h_n, c_n), DirectionCache(x, h0, c0, y, gates, cells)
    if kind == "gru":
        y, gates, hn, h_n = be.gru_forward(x, lengths, W_ih, W_hh, b_ih, b_hh, h0)
        return y, h_n, DirectionCache(x, h0, None, y, gates, hn)
    y, h_n = be.rnn_forward(x, lengths, W_ih, W_hh, b_ih, b_hh, h0, RELU_CEILING)
    return y, h_n, DirectionCache(x, h0, None, y, None, None)


def forward(
    params: dict[str, np.ndarray],
    x: np.ndarray,
    lengths: np.ndarray,
    kind: str,
    bidirectional: bool = False,
    merge: str = "concat",
    initial_state: Any = None,
    *,
    backend: str | ModuleType | None = None,
) -> tuple[np.ndarray, RNNCache]:
    """Run a recurrent layer over a padded batch.

    Parameters
    ----------
    params : as made by :func:`init` for the same kind and directions, dtype of ``x``
    x : (T, B, F) float32 or float64
    lengths : (B,) int, each in [0, T]
    kind : "rnn", "lstm" or "gru"
    bidirectional : run a second direction backwards from each sequence's end
    merge : "concat" gives ``(T, B, 2H)``, "sum" ``(T, B, H)`` (bidirectional only)
    initial_state : None for zeros, else a state as described in the module docstring
    backend : a backend name or module (default: ``$NPSPEECH_BACKEND`` or numba)

    Returns
    -------
    y : (T, B, H) unidirectional, (T, B, 2H) or (T, B, H) bidirectional; dtype of ``x``,
        zero at padded frames
    cache : :class:`RNNCache`; ``cache.final_state`` is the state after each
        sequence's last frame (the initial state where a length is zero)

    Raises
    ------
    ConfigError
        For an unknown kind or merge mode, or arrays of the wrong shape or dtype.
    """
    x, lengths, H = _check_inputs(params, x, lengths, kind, bidirectional, merge)
    be = get_backend(backend)
    states = _direction_states(
        initial_state, kind, bidirectional, x.shape[1], H, x.dtype, xp_of(x)
    )

    h0, c0 = states[0]
    y, final, direction = _run_direction(be, kind, x, lengths, params, "", h0, c0)
    caches = [direction]
    if not bidirectional:
        cache = RNNCache(kind, False, merge, lengths, caches, final, be, x.dtype)
        return y, cache

    h0, c0 = states[1]
    x_reversed = reverse_sequences(x, lengths)
    y_back, final_back, direction = _run_direction(
        be, kind, x_reversed, lengths, params, REVERSE_SUFFIX, h0, c0
    )
    caches.append(direction)
    y_back = reverse_sequences(y_back, lengths)  # back to the input's time order
    if merge == "sum":
        y = y + y_back
    else:
        y = xp_of(y).concatenate([y, y_back], axis=2)  # (T, B, 2H)
    cache = RNNCache(
        kind, True, merge, lengths, caches, (final, final_back), be, x.dtype
    )
    return y, cache


def _backward_direction(be, kind, params, suffix, dy, d_final, cache, lengths):
    """One direction's gradients: (dx, its four parameters' grads, d_initial_state)."""
    xp = xp_of(dy)
    W_ih = xp.ascontiguousarray(params["W_ih" + suffix])
    W_hh = xp.ascontiguousarray(params["W_hh" + suffix])
    H = W_hh.shape[0]
    B = dy.shape[1]
    zeros = xp.zeros((B, H), dtype=dy.dtype)
    if kind == "lstm":
        dh_n, dc_n = (zeros, zeros) if d_final is None else d_final
        *grads, dh0, dc0 = be.lstm_backward(
            dy,
            _as(dh_n, dy),
            _as(dc_n, dy),
            cache.x,
            lengths,
            W_ih,
            W_hh,
            cache.h0,
            cache.c0,
            cache.y,
            cache.gates,
            cache.extra,
        )
        d_initial = (dh0, dc0)
    elif kind == "gru":
        dh_n = zeros if d_final is None else d_final
        *grads, d_initial = be.gru_backward(
            dy,
            _as(dh_n, dy),
            cache.x,
            lengths,
            W_ih,
            W_hh,
            cache.h0,
            cache.y,
            cache.gates,
            cache.extra,
        )
    else:
        dh_n = zeros if d_final is None else d_final
        *grads, d_initial = be.rnn_backward(
            dy,
            _as(dh_n, dy),
            cache.x,
            lengths,
            W_ih,
            W_hh,
            cache.h0,
            cache.y,
            RELU_CEILING,
        )
    dx = grads[0]
    named = {name + suffix: grad for name, grad in zip(PARAM_NAMES, grads[1:])}
    return dx, named, d_initial


def _as(array, like):
    return xp_of(like).ascontiguousarray(array, dtype=like.dtype)


def backward_with_state(
    params: dict[str, np.ndarray],
    dy: np.ndarray,
    cache: RNNCache,
    d_final_state: Any = None,
) -> tuple[np.ndarray, dict[str, np.ndarray], Any]:
    """Backpropagation through time, with the gradients of the initial state.

    Parameters
    ----------
    params : the parameters given to :func:`forward`
    dy : gradient of ``y``, shaped like it
    cache : from :func:`forward`
    d_final_state : None (the final state feeds nothing) or the gradient of
        ``cache.final_state``, in its format

    Returns
    -------
    dx : (T, B, F) dtype of x, zero at padded frames
    grads : the gradient of every parameter, same keys and shapes as ``params``
    d_initial_state : the gradient of the initial state, in the state format
    """
    be, kind, lengths = cache.backend, cache.kind, cache.lengths
    dy = xp_of(cache.lengths).ascontiguousarray(dy, dtype=cache.input_dtype)
    if not cache.bidirectional:
        dx, grads, d_initial = _backward_direction(
            be, kind, params, "", dy, d_final_state, cache.directions[0], lengths
        )
        return dx, grads, d_initial

    H = params["W_hh"].shape[0]
    if cache.merge == "sum":
        dy_forward, dy_back = dy, dy
    else:
        dy_forward, dy_back = dy[:, :, :H], dy[:, :, H:]
    d_final_forward, d_final_back = (
        (None, None) if d_final_state is None else d_final_state
    )
    dx, grads, d_initial_forward = _backward_direction(
        be,
        kind,
        params,
        "",
        xp_of(dy).ascontiguousarray(dy_forward),
        d_final_forward,
        cache.directions[0],
        lengths,
    )
    dx_back, grads_back, d_initial_back = _backward_direction(
        be,
        kind,
        params,
        REVERSE_SUFFIX,
        reverse_sequences(dy_back, lengths),
        d_final_back,
        cache.directions[1],
        lengths,
    )
    dx = dx + reverse_sequences(dx_back, lengths)
    grads.update(grads_back)
    return dx, grads, (d_initial_forward, d_initial_back)


def backward(
    params: dict[str, np.ndarray], dy: np.ndarray, cache: RNNCache
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Backpropagation through time: ``(dx, grads)``, as :func:`backward_with_state`."""
    dx, grads, _ = backward_with_state(params, dy, cache)
    return dx, grads
