"""The inference network: a model's weights prepared once, run offline or as a stream.

What preparation does (in float64, then stored as float32):

- every batch norm in evaluation mode is an affine map per feature,
  ``y = x * scale + shift`` with ``scale = gamma / sqrt(running_var + eps)`` and
  ``shift = beta - running_mean * scale``; it is folded into the layer next to it (a
  convolution's weight and bias before it, the recurrent layer's input weight or the
  output layer's weight after it), so no normalisation runs at inference;
- every weight matrix (dense, recurrent, convolution) is packed once into the layout
  its kernel reads (the column panels of :mod:`._numba`'s register tiles; training
  packs the recurrent weights on every call);
- with int8 weights (a model from ``npspeech quantize``, or ``weights="int8"``) each
  matrix, after the folding, is quantised per output column
  (:func:`npspeech.quantize.quantize_columns`) and runs on the int8 kernels. For an
  int8 model whose matrices need no folding (DeepSpeech) that gives back the file's
  int8 values exactly; a folded batch norm (DeepSpeech2) rescales rows, so those
  matrices are rounded to int8 once more after the fold.

Streaming (batch 1). Each layer that looks at future frames keeps a small buffer in the
:class:`StreamState`: DeepSpeech's context window holds back ``n_context`` frames, each
``ds2-stream`` convolution the frames its time kernel still needs (its leading zero
padding is the buffer's initial content), the lookahead its ``context`` future frames.
A chunk runs through every layer as far as the frames it completes; ``final=True`` adds
each layer's trailing zero padding, as the offline pass pads the end of a sequence, and
flushes what is left. Recurrent layers carry ``h`` (and ``c``) between chunks. Work per
chunk is proportional to the chunk plus these fixed buffers.

First run. Loading the compiled kernels costs a fixed price once per process (importing
Numba, reading the kernels from its disk cache: ~1 s of a warm decode), and compiling
them on a fresh install (an empty Numba cache) takes seconds more; the NumPy reference
pays neither. A network whose backend was left to the default (``backend=None``,
numba) therefore chooses on each call, and prepares its compiled weights only once
it first needs them:

- quick start: while the work this process has run on the reference (frames times
  weights, over all its inputs) stays within :data:`._quick_start.BUDGET`, the input
  runs on the reference and Numba is not imported (:meth:`reference_only` tells a
  caller so, which then runs its features and log-softmax on NumPy too);
- after that, it checks once whether its kernels are in Numba's disk cache
  (:func:`._numba.kernels_cached`). If they are, it runs them. If not, short inputs run
  on the reference (frames times weights at most :data:`COLD_REFERENCE_WORK`; the
  frames of the padded batch offline, of each chunk streaming), and a detached
  low-priority process compiles the kernels into the cache for later runs
  (:mod:`._warmup`); a stream switches to the compiled kernels as soon as they are
  there (checked at most once a second, its state carries over). A longer offline
  input compiles the kernels in this process, where they pay for themselves.

On the reference an int8 model runs its dequantized weights in float32 (its weights
are the same; the reference's int8 form would convert them at every step). An
explicit ``backend="numba"`` always runs (and if need be compiles) the kernels here.

Shape legend: T frames, B batch, F features, C channels, H hidden, V classes.
"""

from __future__ import annotations

import dataclasses
import time
from types import ModuleType
from typing import Any

import numpy as np

from .. import models
from ..backends import default_backend_name
from ..constants import BATCH_NORM_EPS
from ..errors import ConfigError
from ..nn.rnn import RELU_CEILING, reverse_sequences
from ..quantize import quantize_columns
from . import _quick_start

_DTYPE = np.float32
_WEIGHTS = ("float32", "int8")
#: While the compiled kernels are not cached, an input runs on the NumPy reference when
#: its frames times the model's weights are at most this: about 2e10 multiply-adds, on
#: which the reference spent ~2 s more than the compiled kernels, less than compiling
#: them (measured: DeepSpeech width 2048, 5 s of audio, 2.3 s against 1.05 s; width
#: 512, 0.16 s against 0.10 s). That is ~8 s of audio at width 2048, ~2 min at 512.
COLD_REFERENCE_WORK = 2e10
_COLD_CHECK_SECONDS = 1.0
_STREAMABLE = ("deepspeech", "ds2-stream")


@dataclasses.dataclass
class StreamState:
    """Where a stream stands between chunks (batch 1); the caller keeps it and passes
    it back to :meth:`InferenceNetwork.forward_chunk`, which updates it in place.

    Attributes
    ----------
    recurrent : list
        One entry per recurrent layer, from the input up: ``(h, c)`` for an LSTM,
        ``h`` for a GRU or RNN; each float32 of shape (1, H).
    buffers : list of float32 arrays
        Frames held back, one buffer per windowed layer from the input up. DeepSpeech:
        ``[context]``, (n, F) input frames (at most ``2 n_context`` between chunks).
        ``ds2-stream``: one (n, C_in, F_in) buffer per convolution, frames of its
        input (in the convolution's zero-padded time axis) that later outputs still
        read, then the lookahead's (n, H) frames (at most ``lookahead_context``).
    frames_in : int
        Input frames received so far.
    frames_out : int
        Output frames returned so far.
    finished : bool
        True after the ``final=True`` chunk; the state takes no more input.
    """

    recurrent: list
    buffers: list
    frames_in: int = 0
    frames_out: int = 0
    finished: bool = False


@dataclasses.dataclass(frozen=True)
class _Dense:
    """``y = x @ W + b``, clipped to ``clip`` when given; ``W`` as the kernels'
    ``pack_dense`` gives it, b (F_out,)."""

    W: Any
    b: np.ndarray
    clip: tuple[float, float] | None


@dataclasses.dataclass(frozen=True)
class _Direction:
    """One direction of a recurrent layer.

    ``W_ih`` (F, G*H) packed as the kernels' dense layers read it; ``input_bias``
    (G*H,) added to the input projection (GRU: ``b_ih`` and a folded batch norm's
    shift; zero for the others); ``W_packed`` the kernels'
    form of ``W_hh``; ``step_bias`` (G*H,), the bias the time loop adds (LSTM and RNN:
    ``b_ih + b_hh`` and the folded shift; GRU: ``b_hh``).
    """

    W_ih: np.ndarray
    input_bias: np.ndarray
    W_packed: Any
    step_bias: np.ndarray


@dataclasses.dataclass(frozen=True)
class _Recurrent:
    kind: str
    hidden: int
    directions: tuple[_Direction, ...]


@dataclasses.dataclass(frozen=True)
class _Conv:
    """A convolution with its batch norm folded in; then hardtanh in [0, clip]."""

    W: Any  # (C_out, C_in, kt, kf) as the kernels' pack_conv gives it
    kernel: tuple[int, int]  # (kt, kf)
    b: np.ndarray  # (C_out,)
    stride: tuple[int, int]
    padding: tuple[int, int]
    in_shape: tuple[int, int]  # (C_in, F_in)


def _kernels(name: str) -> ModuleType:
    """The inference kernels for a backend name: ``numpy`` the reference, ``numba``
    the compiled ones."""
    if name == "numpy":
        from . import _reference

        return _reference
    if name == "numba":
        from . import _numba

        return _numba
    raise ConfigError(
        f"the inference network runs on the numpy or numba backend, not {name!r}"
    )


def _batch_norm_affine(network: models.Network, name: str):
    """(scale, shift) in float64 of the batch norm ``name`` in evaluation mode."""
    gamma = network.params[f"{name}/gamma"].astype(np.float64)
    beta = network.params[f"{name}/beta"].astype(np.float64)
    mean = network.state[f"{name}/running_mean"].astype(np.float64)
    var = network.state[f"{name}/running_var"].astype(np.float64)
    scale = gamma / np.sqrt(var + BATCH_NORM_EPS)
    return scale, beta - mean * scale


def _f32(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=_DTYPE)


class InferenceNetwork:
    """A network prepared for inference.

    Parameters
    ----------
    network : npspeech.models.Network
        Any architecture (``deepspeech``, ``ds2``, ``ds2-stream``), any float dtype;
        the inference network computes in float32.
    backend : {"numba", "numpy"}, optional
        Kernels: the compiled ones (default, or ``$NPSPEECH_BACKEND``) or the NumPy
        reference.
    weights : {"float32", "int8"}, optional
        How the weight matrices run. Default: ``int8`` for a network loaded from an
        int8 model file (a :class:`npspeech.quantize.QuantizedNetwork`), else
        ``float32``. ``int8`` on a float network quantises its matrices here.

    Attributes
    ----------
    architecture : str
    streamable : bool
        False for ``ds2`` (bidirectional): it needs the whole sequence.
    n_input : int
        Features per input frame, before the model's own context stacking.
    n_classes : int
        Output classes ``V``, the blank last.
    time_stride : int
        Input frames per output frame.
    weights : str
        ``float32`` or ``int8``.
    """

    def __init__(
        self,
        network: models.Network,
        backend: str | None = None,
        weights: str | None = None,
    ):
        config = network.config
        models.validate_config(config)
        name = default_backend_name() if backend is None else str(backend).lower()
        if weights is None:
            weights = "int8" if getattr(network, "quantized", ()) else "float32"
        if weights not in _WEIGHTS:
            raise ConfigError(f"weights must be one of {_WEIGHTS}, got {weights!r}")
        self.weights = weights
        self.backend = name
        # the first-run fallbacks (module docstring): only where the kernels were left
        # to the default; the compiled weights are then prepared when first needed
        self._cold = backend is None and name == "numba"
        self._network = network if self._cold else None
        self._reference: InferenceNetwork | None = None
        self._next_check = 0.0
        self._n_weights = sum(int(p.size) for p in network.params.values())
        self.config = config
        self.architecture = config.architecture
        self.streamable = config.architecture in _STREAMABLE
        self.n_input = int(network.n_input)
        self.n_classes = int(network.n_classes)
        self.time_stride = int(models.time_stride(config))
        self._clip = (0.0, float(config.relu_clip))
        self._kernels: ModuleType | None = None
        if not self._cold:
            self._prepare(network, name)

    def _prepare(self, network: models.Network, name: str) -> None:
        """Fold, pack (and quantise) the weights for the kernels called ``name``."""
        self._kernels = _kernels(name)
        config = network.config
        params = network.params
        if config.architecture == "deepspeech":
            self._dense_in = [
                self._prepare_dense(params[f"{n}/W"], params[f"{n}/b"], self._clip)
                for n in ("layer_1", "layer_2", "layer_3")
            ]
            self._recurrent = [self._prepare_recurrent(network, "layer_4", "lstm")]
            self._dense_out = [
                self._prepare_dense(
                    params["layer_5/W"], params["layer_5/b"], self._clip
                ),
                self._prepare_dense(params["layer_6/W"], params["layer_6/b"], None),
            ]
            return
        self._convs = []
        F_in = network.n_input
        geometry = models._conv_geometry(config, network.n_input)
        for index, (c_in, _, _, stride, padding, F_out) in enumerate(geometry, 1):
            # conv, then batch norm: (x * W + b) * scale + shift per output channel
            scale, shift = _batch_norm_affine(network, f"conv_{index}_bn")
            W = params[f"conv_{index}/W"].astype(np.float64)
            b = params[f"conv_{index}/b"].astype(np.float64)
            self._convs.append(
                _Conv(
                    W=self._pack_conv(_f32(W * scale[:, None, None, None]), stride),
                    kernel=(int(W.shape[2]), int(W.shape[3])),
                    b=_f32(b * scale + shift),
                    stride=(int(stride[0]), int(stride[1])),
                    padding=(int(padding[0]), int(padding[1])),
                    in_shape=(int(c_in), int(F_in)),
                )
            )
            F_in = F_out
        self._recurrent = [
            self._prepare_recurrent(
                network,
                f"rnn_{index}",
                config.rnn_kind,
                norm=f"rnn_{index}_bn" if index > 1 else None,
            )
            for index in range(1, config.rnn_layers + 1)
        ]
        self._lookahead = (
            _f32(params["lookahead/W"]) if config.architecture == "ds2-stream" else None
        )
        scale, shift = _batch_norm_affine(network, "output_bn")
        W = params["output/W"].astype(np.float64)
        b = params["output/b"].astype(np.float64)
        self._output = self._prepare_dense(W * scale[:, None], b + shift @ W, None)

    # -- first run -------------------------------------------------------------------

    def reference_only(self, frames: int) -> bool:
        """True when an input of ``frames`` frames (times the batch) would run now on
        the NumPy reference with Numba left unimported (the quick start of the module
        docstring). A caller then runs its own steps around the network (features,
        log-softmax) on the numpy backend too, so that nothing imports Numba."""
        return (
            self._cold
            and self._kernels is None
            and _quick_start.fits(frames * self._n_weights)
        )

    def _twin(self) -> InferenceNetwork:
        """This network's weights on the NumPy reference, built once."""
        if self._reference is None:
            self._reference = InferenceNetwork(self._network, "numpy", "float32")
        return self._reference

    def _compiled(self) -> InferenceNetwork:
        """This network on the compiled kernels from now on."""
        if self._kernels is None:
            self._prepare(self._network, "numba")
        self._cold, self._network, self._reference = False, None, None
        return self

    def _runner(self, frames: int) -> InferenceNetwork:
        """This network, or its NumPy twin while the process's quick-start budget
        lasts or while the compiled kernels are not in Numba's cache and the input is
        short (see the module docstring)."""
        if not self._cold:
            return self
        work = frames * self._n_weights
        if self._kernels is None and _quick_start.claim(work):
            return self._twin()
        now = time.monotonic()
        short = work <= COLD_REFERENCE_WORK
        if self._reference is not None and now < self._next_check and short:
            return self._reference
        from . import _numba, _warmup

        kind = self._network.config.rnn_kind
        if self.architecture == "deepspeech":
            kind = "lstm"
        if not short or _numba.kernels_cached(self.architecture, kind, self.weights):
            return self._compiled()  # compile here when not cached: it pays
        if self._next_check == 0.0:  # the first time the cache was found cold
            _warmup.start(self.architecture, kind, self.weights)
        self._next_check = now + _COLD_CHECK_SECONDS
        return self._twin()

    # -- preparation ---------------------------------------------------------------

    def _pack_dense(self, W: np.ndarray):
        if self.weights == "int8":
            return self._kernels.pack_dense_int8(*quantize_columns(W, axis=1))
        return self._kernels.pack_dense(_f32(W))

    def _pack_recurrent(self, W_hh: np.ndarray):
        if self.weights == "int8":
            return self._kernels.pack_recurrent_int8(*quantize_columns(W_hh, axis=1))
        return self._kernels.pack_recurrent(_f32(W_hh))

    def _pack_conv(self, W: np.ndarray, stride):
        if self.weights == "int8":
            q, scale = quantize_columns(W, axis=0)
            return self._kernels.pack_conv_int8(q, scale, stride)
        return self._kernels.pack_conv(W, stride)

    def _prepare_dense(self, W, b, clip) -> _Dense:
        return _Dense(self._pack_dense(_f32(W)), _f32(b), clip)

    def _prepare_recurrent(
        self,
        network: models.Network,
        name: str,
        kind: str,
        norm: str | None = None,
    ) -> _Recurrent:
        """Pack a recurrent layer, folding the batch norm ``norm`` before it:
        ``(x * scale + shift) W_ih = x (scale W_ih) + shift W_ih``."""
        params = network.params
        suffixes = ("", "_reverse") if f"{name}/W_ih_reverse" in params else ("",)
        directions = []
        for suffix in suffixes:
            W_ih = params[f"{name}/W_ih{suffix}"].astype(np.float64)
            b_ih = params[f"{name}/b_ih{suffix}"].astype(np.float64)
            b_hh = params[f"{name}/b_hh{suffix}"].astype(np.float64)
            if norm is not None:
                scale, shift = _batch_norm_affine(network, norm)
                b_ih = b_ih + shift @ W_ih
                W_ih = W_ih * scale[:, None]
            W_hh = _f32(params[f"{name}/W_hh{suffix}"])
            if kind == "gru":
                # b_hh stays apart: the reset gate multiplies h W_hn + b_hn
                input_bias, step_bias = _f32(b_ih), _f32(b_hh)
            else:
                # the time loop adds both biases where it reads the projection
                input_bias, step_bias = np.zeros_like(_f32(b_ih)), _f32(b_ih + b_hh)
            directions.append(
                _Direction(
                    W_ih=self._pack_dense(_f32(W_ih)),
                    input_bias=input_bias,
                    W_packed=self._pack_recurrent(W_hh),
                    step_bias=step_bias,
                )
            )
        hidden = params[f"{name}/W_hh"].shape[0]
        return _Recurrent(kind, int(hidden), tuple(directions))

    # -- shared steps ----------------------------------------------------------------

    def _dense(self, layer: _Dense, x: np.ndarray) -> np.ndarray:
        """(..., F_in) -> (..., F_out), the layer over every frame."""
        rows = x.reshape(-1, x.shape[-1])
        if layer.clip is None:
            y = self._kernels.dense(rows, layer.W, layer.b)
        else:
            y = self._kernels.dense_clip(rows, layer.W, layer.b, *layer.clip)
        return y.reshape(*x.shape[:-1], layer.b.size)

    def _direction(self, layer, direction, x, lengths, state) -> np.ndarray:
        """One direction over (T, B, F) -> (T, B, H); ``state`` updated in place."""
        T, B, F = x.shape
        rows = x.reshape(T * B, F)
        xw = self._kernels.dense(rows, direction.W_ih, direction.input_bias)
        xw = np.ascontiguousarray(xw).reshape(T, B, -1)  # (T, B, G*H)
        y = np.empty((T, B, layer.hidden), dtype=_DTYPE)
        lengths = np.ascontiguousarray(lengths, dtype=np.int64)
        k = self._kernels
        if layer.kind == "lstm":
            h, c = state
            k.lstm_sequence(
                xw, lengths, direction.W_packed, direction.step_bias, h, c, y
            )
        elif layer.kind == "gru":
            k.gru_sequence(
                xw, lengths, direction.W_packed, direction.step_bias, state, y
            )
        else:
            ceiling = _DTYPE(RELU_CEILING)
            k.rnn_sequence(
                xw, lengths, direction.W_packed, direction.step_bias, state, ceiling, y
            )
        return y

    def _zero_state(self, layer: _Recurrent, B: int):
        h = np.zeros((B, layer.hidden), dtype=_DTYPE)
        if layer.kind == "lstm":
            return (h, np.zeros_like(h))
        return h

    def _conv(self, conv: _Conv, xp: np.ndarray) -> np.ndarray:
        """The folded convolution and its hardtanh over a time- and frequency-padded
        input (Tp, B, C_in, Fp) -> (T', B, C_out, F')."""
        return self._kernels.conv_clip(
            xp, conv.W, conv.b, conv.kernel, conv.stride, *self._clip
        )

    def _lookahead_window(self, x: np.ndarray, T_out: int) -> np.ndarray:
        """``y[t] = sum_k W[k] x[t + k]`` for t < T_out: x (T_out + context, ..., H),
        zero where the sequence has ended; then the hardtanh."""
        W = self._lookahead
        y = W[0] * x[:T_out]
        for k in range(1, W.shape[0]):
            y += W[k] * x[k : k + T_out]
        return np.clip(y, *self._clip, out=y)

    # -- offline ---------------------------------------------------------------------

    def forward(
        self, features: np.ndarray, lengths: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Run a padded batch at once.

        Parameters
        ----------
        features : array, shape (T, B, F)
            ``F == n_input``; cast to float32. Frames past a length are ignored.
        lengths : int array, shape (B,)
            Valid frames per sequence, each in [0, T].

        Returns
        -------
        logits : float32 array, shape (T_out, B, V)
            Zero on padded frames; ``models.forward(network, features, lengths,
            training=False)[0]`` to float32 rounding.
        output_lengths : int32 array, shape (B,)
        """
        features = np.asarray(features)
        if features.ndim != 3 or features.shape[2] != self.n_input:
            raise ConfigError(
                f"features must have shape (T, B, {self.n_input}), got {features.shape}"
            )
        T, B, _ = features.shape
        lengths = np.asarray(lengths)
        if lengths.shape != (B,) or not np.issubdtype(lengths.dtype, np.integer):
            raise ConfigError(
                f"lengths must be an integer array of shape ({B},), got "
                f"{lengths.dtype} {lengths.shape}"
            )
        if B and (lengths.min() < 0 or lengths.max() > T):
            raise ConfigError(f"lengths {lengths.tolist()} outside 0..{T}")
        runner = self._runner(T * B)
        if runner is not self:
            return runner.forward(features, lengths)
        lengths = lengths.astype(np.int32)
        features = features.astype(_DTYPE, copy=False)
        if self.architecture == "deepspeech":
            return self._deepspeech(features, lengths), lengths.copy()
        return self._ds2(features, lengths)

    def _deepspeech(self, features: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        x = models.stack_context(features, lengths, self.config.n_context)
        return self._deepspeech_layers(x, lengths, None)

    def _deepspeech_layers(self, x, lengths, state) -> np.ndarray:
        """Dense 1-3, the LSTM, dense 5-6 over stacked windows (T, B, (2n+1)F); padded
        frames zeroed. ``state``: the LSTM's (h, c), or None for zeros."""
        T, B = x.shape[:2]
        for layer in self._dense_in:
            x = self._dense(layer, x)
        recurrent = self._recurrent[0]
        if state is None:
            state = self._zero_state(recurrent, B)
        x = self._direction(recurrent, recurrent.directions[0], x, lengths, state)
        for layer in self._dense_out:
            x = self._dense(layer, x)
        return _mask(x, lengths)

    def _ds2(self, features: np.ndarray, lengths: np.ndarray):
        T, B, F = features.shape
        input_lengths = lengths
        x = _mask(features.copy(), lengths)[:, :, None, :]  # (T, B, 1, F)
        for conv in self._convs:
            (pt, pf), kt = conv.padding, conv.kernel[0]
            T = x.shape[0]
            if (T + 2 * pt - kt) // conv.stride[0] + 1 < 1:
                lengths = models.output_lengths(self.config, input_lengths)
                return np.zeros((0, B, self.n_classes), dtype=_DTYPE), lengths
            xp = np.zeros(
                (T + 2 * pt, B, x.shape[2], x.shape[3] + 2 * pf), dtype=_DTYPE
            )
            xp[pt : pt + T, :, :, pf : pf + x.shape[3]] = x
            x = self._conv(conv, xp)
            lengths = np.maximum((lengths + 2 * pt - kt) // conv.stride[0] + 1, 0)
            lengths = lengths.astype(np.int32)
            x = _mask(x, lengths)
        T, B, C, F = x.shape
        x = x.reshape(T, B, C * F)  # (T, B, C x F'): channels and frequencies
        for layer in self._recurrent:
            forward_state = self._zero_state(layer, B)
            y = self._direction(layer, layer.directions[0], x, lengths, forward_state)
            if len(layer.directions) == 2:
                # the backward direction starts at each sequence's own end; the
                # directions are summed (DeepSpeech2)
                reverse = reverse_sequences(x, lengths)
                state = self._zero_state(layer, B)
                y_rev = self._direction(
                    layer, layer.directions[1], reverse, lengths, state
                )
                y += reverse_sequences(y_rev, lengths)
            x = y
        if self._lookahead is not None:
            context = self._lookahead.shape[0] - 1
            padded = np.concatenate(
                [x, np.zeros((context, B, x.shape[2]), dtype=_DTYPE)]
            )
            x = _mask(self._lookahead_window(padded, T), lengths)
        return _mask(self._dense(self._output, x), lengths), lengths

    # -- streaming -------------------------------------------------------------------

    def new_state(self) -> StreamState:
        """A fresh stream's state (batch 1).

        Raises
        ------
        ConfigError
            For an architecture that cannot stream (``ds2`` is bidirectional).
        """
        if not self.streamable:
            raise ConfigError(
                f"architecture {self.architecture!r} is bidirectional and cannot run "
                f"as a stream; streaming needs {' or '.join(_STREAMABLE)}"
            )
        if self._kernels is None:  # not prepared yet: the twin's state is the same
            return self._twin().new_state()
        for index, conv in enumerate(getattr(self, "_convs", []), 1):
            if conv.kernel[0] < conv.stride[0]:
                # a stream would have to skip input frames that no output reads
                raise ConfigError(
                    f"conv_{index}'s time kernel {conv.kernel[0]} is shorter than its "
                    f"time stride {conv.stride[0]}; such a model cannot stream"
                )
        recurrent = [self._zero_state(layer, 1) for layer in self._recurrent]
        if self.architecture == "deepspeech":
            # the context window's frames before the start count as zero
            n_context = self.config.n_context
            buffers = [np.zeros((n_context, self.n_input), dtype=_DTYPE)]
        else:
            buffers = [
                np.zeros((conv.padding[0], *conv.in_shape), dtype=_DTYPE)
                for conv in self._convs
            ]
            buffers.append(np.zeros((0, self._recurrent[-1].hidden), dtype=_DTYPE))
        return StreamState(recurrent=recurrent, buffers=buffers)

    def forward_chunk(
        self, features: np.ndarray, state: StreamState, final: bool = False
    ) -> np.ndarray:
        """Run the next chunk of a stream.

        Parameters
        ----------
        features : array, shape (T_chunk, F)
            The next input frames (``F == n_input``; T_chunk may be 0), cast to
            float32.
        state : StreamState
            From :meth:`new_state`, updated in place.
        final : bool
            The stream ends with this chunk: the held-back frames are flushed with
            the zero padding the offline pass adds at a sequence's end.

        Returns
        -------
        float32 array, shape (T_new, V)
            The output frames this chunk completes. Concatenated over all chunks:
            :meth:`forward` on the whole sequence, to float32 rounding.
        """
        if not isinstance(state, StreamState):
            raise ConfigError(
                f"state must be a StreamState, got {type(state).__name__}"
            )
        if state.finished:
            raise ConfigError(
                "this stream has finished (final=True was given); start another "
                "with new_state()"
            )
        if not self.streamable:
            self.new_state()  # raises the explanation
        features = np.asarray(features)
        if features.size == 0:
            features = np.zeros((0, self.n_input), dtype=_DTYPE)
        if features.ndim != 2 or features.shape[1] != self.n_input:
            raise ConfigError(
                f"a chunk must have shape (T_chunk, {self.n_input}), got "
                f"{features.shape}"
            )
        features = features.astype(_DTYPE, copy=False)
        runner = self._runner(features.shape[0])
        if runner is not self:
            return runner.forward_chunk(features, state, final)
        state.frames_in += features.shape[0]
        if self.architecture == "deepspeech":
            out = self._deepspeech_chunk(features, state, final)
        else:
            out = self._ds2_chunk(features, state, final)
        state.frames_out += out.shape[0]
        state.finished = bool(final)
        return out

    def _deepspeech_chunk(self, features, state: StreamState, final: bool):
        n_context = self.config.n_context
        buffer = np.concatenate([state.buffers[0], features])
        if final:
            tail = np.zeros((n_context, self.n_input), dtype=_DTYPE)
            buffer = np.concatenate([buffer, tail])
        width = 2 * n_context + 1
        T = buffer.shape[0] - 2 * n_context  # frames whose whole window is here
        if T <= 0:
            state.buffers[0] = buffer
            return np.zeros((0, self.n_classes), dtype=_DTYPE)
        windows = np.lib.stride_tricks.sliding_window_view(buffer, width, axis=0)
        # (T, F, 2n+1) -> (T, 2n+1, F) -> (T, 1, (2n+1)F): frame-major, as stack_context
        x = windows[:T].transpose(0, 2, 1).reshape(T, 1, width * self.n_input)
        state.buffers[0] = buffer[T:].copy()
        lengths = np.array([T], dtype=np.int32)
        return self._deepspeech_layers(x, lengths, state.recurrent[0])[:, 0]

    def _ds2_chunk(self, features, state: StreamState, final: bool):
        x = features[:, None, :]  # (T, 1, F): one input channel
        for index, conv in enumerate(self._convs):
            (pt, pf), kt, st = conv.padding, conv.kernel[0], conv.stride[0]
            buffer = np.concatenate([state.buffers[index], x])
            if final:
                tail = np.zeros((pt, *conv.in_shape), dtype=_DTYPE)
                buffer = np.concatenate([buffer, tail])
            T = (buffer.shape[0] - kt) // st + 1 if buffer.shape[0] >= kt else 0
            if T > 0:
                used = (T - 1) * st + kt
                C, F = conv.in_shape
                xp = np.zeros((used, 1, C, F + 2 * pf), dtype=_DTYPE)
                xp[:, 0, :, pf : pf + F] = buffer[:used]
                x = self._conv(conv, xp)[:, 0]  # (T, C_out, F')
            else:
                F_out = (conv.in_shape[1] + 2 * pf - conv.kernel[1]) // conv.stride[1]
                x = np.zeros((0, conv.b.size, F_out + 1), dtype=_DTYPE)
            state.buffers[index] = buffer[T * st :].copy()
        T = x.shape[0]
        x = x.reshape(T, 1, x.shape[1] * x.shape[2])  # (T, 1, C x F')
        if T:
            lengths = np.array([T], dtype=np.int32)
            for layer, layer_state in zip(
                self._recurrent, state.recurrent, strict=True
            ):
                x = self._direction(layer, layer.directions[0], x, lengths, layer_state)
        else:
            x = np.zeros((0, 1, self._recurrent[-1].hidden), dtype=_DTYPE)
        context = self._lookahead.shape[0] - 1
        buffer = np.concatenate([state.buffers[-1], x[:, 0]])
        if final:
            tail = np.zeros((context, buffer.shape[1]), dtype=_DTYPE)
            buffer = np.concatenate([buffer, tail])
        T = max(buffer.shape[0] - context, 0)
        y = self._lookahead_window(buffer, T)  # (T, H)
        state.buffers[-1] = buffer[T:].copy()
        return self._dense(self._output, y)


def _mask(x: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """x (T, B, ...) with frames ``t >= lengths[b]`` set to zero, in place."""
    T = x.shape[0]
    for b in np.flatnonzero(np.asarray(lengths) < T):
        x[lengths[b] :, b] = 0
    return x
