"""Architectures as plain data: a config, a flat dict of weights and batch-norm state.

A :class:`Network` holds no behaviour of its own. :func:`forward` runs it over a padded,
time-major batch and records a *tape* of the layer calls; :func:`backward` walks the
tape in reverse through the layers' own backward functions. Every layer comes from
``npspeech.nn``, so the model code only composes, masks and names.

Shape legend: T frames, B batch, F features, H hidden (``n_hidden``), C channels, V
output classes (the alphabet plus the blank, which is last).

Architectures
-------------
``deepspeech``
    DeepSpeech 0.9: ``n_context`` frames either side are stacked onto each frame
    (19 x 26 MFCC = 494 inputs), three dense layers with ReLU clipped at ``relu_clip``
    and dropout, one unidirectional LSTM, a dense layer with clipped ReLU and dropout,
    and the output layer. Parameters are named ``layer_1`` .. ``layer_6`` as in
    DeepSpeech (``layer_4`` is the LSTM).
``ds2``
    DeepSpeech2: two (time, frequency) convolutions, each followed by batch norm and a
    hardtanh in ``[0, relu_clip]``; ``rnn_layers`` bidirectional recurrent layers whose
    directions are summed, each but the first preceded by sequence-wise batch norm and
    each followed by dropout (``dropout``, 0 in the preset); and a batch-normalised
    output layer.
``ds2-stream``
    ``ds2`` with unidirectional recurrent layers and a lookahead (row) convolution over
    ``lookahead_context`` future frames before the output, so it can run on a stream.

Padded frames (``t >= lengths[b]``) are zero on every layer's output: the model masks
after each layer that would otherwise leak a bias into them, so padding never changes a
sequence's result (batch norm reads valid frames only).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np

from .config import ModelConfig
from .errors import ConfigError
from .nn._checks import xp_of

ARCHITECTURES = ("deepspeech", "ds2", "ds2-stream")
_RNN_KINDS = ("rnn", "lstm", "gru")


@dataclasses.dataclass
class Network:
    """A model as data.

    Attributes
    ----------
    config : ModelConfig
        Architecture and sizes.
    n_input : int
        Features per frame the model reads (``F``; 26 MFCC for DeepSpeech, before the
        context stacking the model does itself).
    n_classes : int
        Output classes ``V``: the alphabet's labels plus the blank (last).
    params : dict of str to ndarray
        Trainable weights, named ``layer/param`` (``layer_1/W``, ``layer_4/W_ih``, ...).
    state : dict of str to ndarray
        Batch-norm running statistics (``conv_1_bn/running_mean``, ...); empty for
        ``deepspeech``. Updated by the training loop from :attr:`ForwardCache.state`.
    """

    config: ModelConfig
    n_input: int
    n_classes: int
    params: dict[str, np.ndarray]
    state: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    @property
    def dtype(self) -> np.dtype:
        """dtype of the weights (float32 in production, float64 in gradient checks)."""
        return next(iter(self.params.values())).dtype

    def n_parameters(self) -> int:
        """Number of trainable scalars."""
        return int(sum(array.size for array in self.params.values()))

    def astype(self, dtype: Any) -> Network:
        """A copy with weights and state cast to ``dtype``."""
        return Network(
            self.config,
            self.n_input,
            self.n_classes,
            {name: array.astype(dtype) for name, array in self.params.items()},
            {name: array.astype(dtype) for name, array in self.state.items()},
        )

    def copy(self) -> Network:
        """A deep copy (the arrays are copied)."""
        return self.astype(self.dtype)


@dataclasses.dataclass
class ForwardCache:
    """What :func:`backward` needs from :func:`forward`.

    Attributes
    ----------
    tape : list of tuple
        ``(op, layer_name, payload)`` in forward order; ``payload`` is the layer's own
        cache, or for ``"mask"`` the ``(T, B, 1)`` float mask, for ``"reshape"`` the
        shape before the reshape.
    lengths : int32 array, shape (B,)
        Input frames per sequence.
    output_lengths : int32 array, shape (B,)
        Output frames per sequence (fewer than the input's after a strided convolution).
    state : dict of str to ndarray
        Batch-norm running statistics after this batch (the input's when not training).
    """

    tape: list[tuple[str, str, Any]]
    lengths: np.ndarray
    output_lengths: np.ndarray
    state: dict[str, np.ndarray]


# -- configuration ---------------------------------------------------------------------


def _pairs(values: Any, name: str, count: int) -> tuple[tuple[int, int], ...]:
    """``values`` as ``count`` (time, frequency) int pairs (TOML gives lists)."""
    try:
        pairs = tuple((int(a), int(b)) for a, b in values)
    except (TypeError, ValueError):
        raise ConfigError(
            f"model.{name} must be a list of [time, frequency] pairs"
        ) from None
    if len(pairs) != count:
        raise ConfigError(
            f"model.{name} has {len(pairs)} entries, conv_channels {count}"
        )
    return pairs


def validate_config(config: ModelConfig) -> None:
    """Raise :class:`ConfigError` naming the first setting the architectures reject."""
    if config.architecture not in ARCHITECTURES:
        raise ConfigError(
            f"model.architecture {config.architecture!r} is unknown; "
            f"choose one of {', '.join(ARCHITECTURES)}"
        )
    if config.n_hidden < 1:
        raise ConfigError(f"model.n_hidden must be positive, got {config.n_hidden}")
    if not 0.0 <= config.dropout < 1.0:
        raise ConfigError(f"model.dropout must be in [0, 1), got {config.dropout}")
    if config.relu_clip <= 0:
        raise ConfigError(f"model.relu_clip must be positive, got {config.relu_clip}")
    if config.architecture == "deepspeech":
        if config.n_context < 0:
            raise ConfigError(f"model.n_context must be >= 0, got {config.n_context}")
        return
    count = len(config.conv_channels)
    if count < 1:
        raise ConfigError("model.conv_channels needs at least one convolution")
    for name in ("conv_kernels", "conv_strides", "conv_padding"):
        _pairs(getattr(config, name), name, count)
    if config.rnn_kind not in _RNN_KINDS:
        raise ConfigError(
            f"model.rnn_kind {config.rnn_kind!r} is unknown; choose one of {_RNN_KINDS}"
        )
    if config.rnn_layers < 1:
        raise ConfigError(f"model.rnn_layers must be >= 1, got {config.rnn_layers}")
    if config.architecture == "ds2-stream" and config.lookahead_context < 0:
        raise ConfigError(
            f"model.lookahead_context must be >= 0, got {config.lookahead_context}"
        )


def layer_names(config: ModelConfig) -> list[str]:
    """Layers from the input up; the last is the output layer.

    A layer owns the parameters and state whose names start with ``NAME/`` or
    ``NAME_bn/`` (its batch norm). Transfer learning re-initialises the top ones.
    """
    if config.architecture == "deepspeech":
        return [f"layer_{i}" for i in range(1, 7)]
    names = [f"conv_{i + 1}" for i in range(len(config.conv_channels))]
    names += [f"rnn_{i + 1}" for i in range(config.rnn_layers)]
    if config.architecture == "ds2-stream":
        names.append("lookahead")
    return names + ["output"]


def layer_of(param_name: str) -> str:
    """The layer owning a parameter or state entry (``rnn_2_bn/gamma`` -> ``rnn_2``)."""
    prefix = param_name.split("/", 1)[0]
    return prefix[: -len("_bn")] if prefix.endswith("_bn") else prefix


def _conv_geometry(config: ModelConfig, n_input: int) -> Iterator[tuple[int, int, Any]]:
    """``(C_in, C_out, kernel, stride, padding, F_out)`` per convolution."""
    count = len(config.conv_channels)
    kernels = _pairs(config.conv_kernels, "conv_kernels", count)
    strides = _pairs(config.conv_strides, "conv_strides", count)
    paddings = _pairs(config.conv_padding, "conv_padding", count)
    channels_in, frequencies = 1, n_input
    for channels_out, kernel, stride, padding in zip(
        config.conv_channels, kernels, strides, paddings, strict=True
    ):
        frequencies = (frequencies + 2 * padding[1] - kernel[1]) // stride[1] + 1
        if frequencies < 1:
            raise ConfigError(
                f"model convolutions leave no frequency bins for {n_input} "
                "input features"
            )
        yield channels_in, int(channels_out), kernel, stride, padding, frequencies
        channels_in = int(channels_out)


def time_stride(config: ModelConfig) -> int:
    """Feature frames per output frame: the product of the convolutions'
    time strides.
    """
    if config.architecture == "deepspeech":
        return 1
    stride = 1
    for s_time, _ in config.conv_strides:
        stride *= int(s_time)
    return stride


def output_lengths(config: ModelConfig, lengths: np.ndarray) -> np.ndarray:
    """Output frames per sequence, ``(B,)`` int32 (strided convolutions shorten)."""
    lengths = np.asarray(lengths, dtype=np.int32)
    if config.architecture == "deepspeech":
        return lengths.copy()
    for _, _, kernel, stride, padding, _ in _conv_geometry(config, 1 << 20):
        lengths = (lengths + 2 * padding[0] - kernel[0]) // stride[0] + 1
        lengths = np.maximum(lengths, 0).astype(np.int32)
    return lengths


# -- initialisation --------------------------------------------------------------------


def init(
    config: ModelConfig,
    n_input: int,
    n_classes: int,
    rng: np.random.Generator,
    dtype: Any = np.float32,
) -> Network:
    """A freshly initialised network.

    Parameters
    ----------
    config : ModelConfig
    n_input : int
        Features per frame (before context stacking).
    n_classes : int
        Output classes, blank included.
    rng : numpy.random.Generator
        The only source of randomness; the same seed gives the same weights.
    dtype : float32 or float64
    """
    from .nn import dense, rnn

    validate_config(config)
    if n_input < 1 or n_classes < 2:
        raise ConfigError(
            f"a model needs n_input >= 1 and n_classes >= 2, got "
            f"{n_input} and {n_classes}"
        )
    params: dict[str, np.ndarray] = {}
    state: dict[str, np.ndarray] = {}
    H = config.n_hidden

    def add(prefix: str, values: dict[str, np.ndarray]) -> None:
        for key, value in values.items():
            params[f"{prefix}/{key}"] = np.asarray(value, dtype=dtype)

    def add_norm(prefix: str, n_features: int) -> None:
        from .nn import norm

        norm_params, norm_state = norm.batch_norm_init(n_features)
        add(prefix, norm_params)
        for key, value in norm_state.items():
            state[f"{prefix}/{key}"] = np.asarray(value, dtype=dtype)

    if config.architecture == "deepspeech":
        width = (2 * config.n_context + 1) * n_input
        for name, n_in, n_out in (
            ("layer_1", width, H),
            ("layer_2", H, H),
            ("layer_3", H, H),
        ):
            add(
                name,
                dense.init(rng, n_in, n_out, dtype=dtype, scheme=config.init_scheme),
            )
        add(
            "layer_4",
            rnn.init(rng, "lstm", H, H, forget_bias=config.forget_bias, dtype=dtype),
        )
        add("layer_5", dense.init(rng, H, H, dtype=dtype, scheme=config.init_scheme))
        add(
            "layer_6",
            dense.init(rng, H, n_classes, dtype=dtype, scheme=config.init_scheme),
        )
        return Network(config, n_input, n_classes, params, state)

    from .nn import conv, lookahead

    for index, (c_in, c_out, kernel, _, _, _) in enumerate(
        _conv_geometry(config, n_input), start=1
    ):
        add(f"conv_{index}", conv.init(rng, c_in, c_out, kernel=kernel))
        add_norm(f"conv_{index}_bn", c_out)
    *_, last = _conv_geometry(config, n_input)
    width = last[1] * last[5]  # C x F' after the last convolution
    bidirectional = config.architecture == "ds2"
    for index in range(1, config.rnn_layers + 1):
        if index > 1:
            add_norm(f"rnn_{index}_bn", width)
        add(
            f"rnn_{index}",
            rnn.init(
                rng,
                config.rnn_kind,
                width,
                H,
                bidirectional=bidirectional,
                forget_bias=config.forget_bias,
                dtype=dtype,
            ),
        )
        width = H  # directions are summed, not concatenated
    if config.architecture == "ds2-stream":
        add("lookahead", lookahead.init(rng, H, config.lookahead_context))
    add_norm("output_bn", H)
    add("output", dense.init(rng, H, n_classes, dtype=dtype, scheme=config.init_scheme))
    return Network(config, n_input, n_classes, params, state)


def reinitialize(
    network: Network, layers: list[str], rng: np.random.Generator
) -> Network:
    """A copy of ``network`` whose named layers (and their batch norms) are fresh."""
    fresh = init(network.config, network.n_input, network.n_classes, rng, network.dtype)
    unknown = sorted(set(layers) - set(layer_names(network.config)))
    if unknown:
        raise ConfigError(
            f"unknown layer(s) {', '.join(unknown)} for {network.config.architecture}"
        )
    result = network.copy()
    for table, fresh_table in (
        (result.params, fresh.params),
        (result.state, fresh.state),
    ):
        for name in table:
            if layer_of(name) in layers:
                table[name] = fresh_table[name]
    return result


def with_classes(network: Network, n_classes: int, rng: np.random.Generator) -> Network:
    """A copy with a new output layer for ``n_classes`` classes (a changed alphabet)."""
    fresh = init(network.config, network.n_input, n_classes, rng, network.dtype)
    top = layer_names(network.config)[-1]
    params = {
        name: (fresh.params[name] if layer_of(name) == top else value.copy())
        for name, value in network.params.items()
    }
    state = {
        name: (fresh.state[name] if layer_of(name) == top else value.copy())
        for name, value in network.state.items()
    }
    return Network(network.config, network.n_input, n_classes, params, state)


# -- forward / backward ----------------------------------------------------------------


def frame_mask(lengths: np.ndarray, T: int, dtype: Any) -> np.ndarray:
    """``(T, B, 1)`` mask, 1 on valid frames and 0 on padding; on the device of
    ``lengths`` (NumPy or CuPy)."""
    xp = xp_of(lengths)
    return (xp.arange(T)[:, None] < xp.asarray(lengths)[None, :]).astype(dtype)[
        :, :, None
    ]


def stack_context(
    features: np.ndarray, lengths: np.ndarray, n_context: int
) -> np.ndarray:
    """DeepSpeech's context windows over a padded batch.

    Parameters
    ----------
    features : array, shape (T, B, F)
    lengths : int array, shape (B,)
    n_context : int
        Frames each side; frames outside a sequence count as zero.

    Returns
    -------
    array, shape (T, B, (2 * n_context + 1) * F), the input's dtype and device, zero on
    padding.
    """
    xp = xp_of(features)
    T, B, F = features.shape
    mask = frame_mask(lengths, T, features.dtype)  # (T, B, 1)
    width = 2 * n_context + 1
    # Zero frames before the start and after the end of every sequence (its padding
    # is zeroed first), then a window of 2n+1 frames around each one: the same as
    # ``npspeech.features.context_windows`` on each sequence alone, without a loop.
    padded = xp.zeros((T + 2 * n_context, B, F), dtype=features.dtype)
    padded[n_context : n_context + T] = features * mask
    windows = xp.lib.stride_tricks.sliding_window_view(padded, width, axis=0)
    # (T, B, F, 2n+1) -> (T, B, 2n+1, F) -> (T, B, (2n+1)F): frame-major, as DeepSpeech
    stacked = windows.transpose(0, 1, 3, 2).reshape(T, B, width * F)
    return stacked * mask


def _sub(table: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """Entries of ``table`` under ``prefix/``, with the prefix stripped."""
    start = prefix + "/"
    return {
        key[len(start) :]: value
        for key, value in table.items()
        if key.startswith(start)
    }


def forward(
    network: Network,
    features: np.ndarray,
    lengths: np.ndarray,
    training: bool = False,
    rng: np.random.Generator | None = None,
    backend: Any = None,
    frozen_batch_norm: bool = False,
) -> tuple[np.ndarray, np.ndarray, ForwardCache]:
    """Run the network over a padded batch.

    Parameters
    ----------
    network : Network
    features : array, shape (T, B, F), the network's dtype
        Zero on padded frames; ``F == network.n_input``. A CuPy array (with the
        network's weights and state on the same device) runs the whole pass on the
        device: the logits, the cache and the new batch-norm state stay there.
    lengths : int array, shape (B,)
        Valid frames per sequence; checked on the host (CuPy lengths are read back,
        B integers) and uploaded once for a device batch.
    training : bool
        Dropout on, batch norm from batch statistics (updating the running state).
    rng : numpy.random.Generator, optional
        Dropout masks; required when training with dropout.
    backend : str or module, optional
        Kernel backend passed to every layer.
    frozen_batch_norm : bool
        With ``training``: batch norms normalise with their running statistics, as in
        evaluation, and leave them unchanged (dropout stays on); the backward pass
        then treats the statistics as constants. For training on batches whose
        statistics differ from the population's (``train.freeze_batch_norm``).

    Returns
    -------
    logits : array, shape (T_out, B, V)
        Unnormalised scores, zero on padded frames.
    output_lengths : int32 array, shape (B,)
    cache : ForwardCache
    """
    xp = xp_of(features)
    if xp_of(lengths) is not np:
        lengths = lengths.get()
    features = xp.asarray(features)
    lengths = np.asarray(lengths, dtype=np.int32)
    if features.ndim != 3 or features.shape[2] != network.n_input:
        raise ConfigError(
            f"expected features of shape (T, B, {network.n_input}), "
            f"got {features.shape}"
        )
    if lengths.shape != (features.shape[1],):
        raise ConfigError(
            f"lengths of shape {lengths.shape} for batch {features.shape[1]}"
        )
    if lengths.size and (lengths.min() < 0 or lengths.max() > features.shape[0]):
        raise ConfigError(f"lengths {lengths.tolist()} outside 0..{features.shape[0]}")
    if training and network.config.dropout > 0 and rng is None:
        raise ConfigError("training with dropout needs an rng")
    features = features.astype(network.dtype, copy=False)
    run = _Runner(network, training, rng, backend, frozen_batch_norm)
    # A device batch takes its lengths along once (B int32); the host copy names the
    # output lengths.
    layer_lengths = lengths if xp is np else xp.asarray(lengths)
    if network.config.architecture == "deepspeech":
        logits = run.deepspeech(features, lengths, layer_lengths)
    else:
        logits = run.ds2(features, lengths, layer_lengths)
    cache = ForwardCache(run.tape, lengths, run.lengths, run.state)
    return logits, run.lengths, cache


def backward(
    network: Network, dlogits: np.ndarray, cache: ForwardCache, backend: Any = None
) -> dict[str, np.ndarray]:
    """Gradients of a loss with respect to every parameter.

    Parameters
    ----------
    network : Network
        The network :func:`forward` ran.
    dlogits : array, shape (T_out, B, V)
        d loss / d logits (zero on padded frames, as CTC gives it).
    cache : ForwardCache

    Returns
    -------
    dict of str to ndarray
        The keys and shapes of ``network.params``.
    """
    import importlib

    grads: dict[str, np.ndarray] = {}
    dy = xp_of(dlogits).asarray(dlogits, dtype=network.dtype)
    params = network.params
    kw = {} if backend is None else {"backend": backend}
    # Nothing before the first layer with parameters needs a gradient: the features are
    # data. That layer skips its input gradient (dense, conv) and the walk stops there.
    with_params = [op in _BACKWARD and _BACKWARD[op][2] for op, _, _ in cache.tape]
    first = with_params.index(True)
    for index in range(len(cache.tape) - 1, first - 1, -1):
        op, name, payload = cache.tape[index]
        if op == "mask":
            dy = dy * payload
            continue
        if op == "reshape":
            dy = dy.reshape(payload)  # (T, B, C * F') -> (T, B, C, F')
            continue
        module_name, function_name, has_params = _BACKWARD[op]
        function = getattr(
            importlib.import_module(f"npspeech.nn.{module_name}"), function_name
        )
        # The recurrent cache remembers its backend; the other layers take it again.
        options = {} if op == "rnn" else dict(kw)
        if index == first and op in ("dense", "conv"):
            options["input_grad"] = False
        if not has_params:
            dy = function(dy, payload, **options)
            continue
        dy, layer_grads = function(_sub(params, name), dy, payload, **options)
        for key, value in layer_grads.items():
            grads[f"{name}/{key}"] = value
    missing = set(params) - set(grads)
    assert not missing, f"no gradient for {sorted(missing)}"
    return grads


# tape op -> (npspeech.nn module, backward function, whether it has parameters)
_BACKWARD = {
    "hardtanh": ("activations", "hardtanh_backward", False),
    "dropout": ("dropout", "dropout_backward", False),
    "dense": ("dense", "backward", True),
    "rnn": ("rnn", "backward", True),
    "conv": ("conv", "backward", True),
    "batch_norm": ("norm", "batch_norm_backward", True),
    "batch_norm_conv": ("norm", "batch_norm_conv_backward", True),
    "lookahead": ("lookahead", "backward", True),
}


class _Runner:
    """One forward pass: calls the layers, records the tape and the batch-norm state."""

    def __init__(
        self,
        network: Network,
        training: bool,
        rng: Any,
        backend: Any,
        frozen_batch_norm: bool = False,
    ):
        self.network = network
        self.config = network.config
        self.params = network.params
        self.state = dict(network.state)
        self.training = training
        self.batch_statistics = training and not frozen_batch_norm
        self.rng = rng
        self.kw = {} if backend is None else {"backend": backend}
        self.tape: list[tuple[str, str, Any]] = []
        self.lengths = np.zeros(0, dtype=np.int32)

    # -- single steps, each recording what backward needs --
    def mask(self, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
        self.tape.append(("mask", "", mask))
        return x * mask

    def dense(
        self, name: str, x: np.ndarray, lengths: np.ndarray, clipped: bool = False
    ) -> np.ndarray:
        """Affine layer; its padded output frames are zeroed (no bias leaks there).
        ``clipped``: followed by ReLU clipped at ``relu_clip``, in the same pass."""
        from .nn import dense

        clip = (0.0, self.config.relu_clip) if clipped else None
        y, cache = dense.forward(
            _sub(self.params, name), x, lengths, clip=clip, **self.kw
        )
        self.tape.append(("dense", name, cache))
        return y

    def hardtanh(self, x: np.ndarray) -> np.ndarray:
        from .nn import activations

        y, cache = activations.hardtanh_forward(
            x, 0.0, self.config.relu_clip, **self.kw
        )
        self.tape.append(("hardtanh", "", cache))
        return y

    def dropout(self, x: np.ndarray) -> np.ndarray:
        from .nn import dropout

        if not self.training or self.config.dropout == 0:
            return x
        y, cache = dropout.dropout_forward(
            x, self.config.dropout, self.rng, True, **self.kw
        )
        self.tape.append(("dropout", "", cache))
        return y

    def batch_norm(
        self,
        name: str,
        x: np.ndarray,
        lengths: np.ndarray,
        conv: bool = False,
        host_lengths: np.ndarray | None = None,
    ) -> np.ndarray:
        """``host_lengths``: the host copy of device ``lengths``, on which the count
        of values per channel is checked (the layer does not read device lengths)."""
        from .nn import norm

        training = self.batch_statistics
        if training and host_lengths is not None and xp_of(lengths) is not np:
            norm.training_count(host_lengths, x.shape[3] if conv else 1, name)
        function = norm.batch_norm_conv_forward if conv else norm.batch_norm_forward
        y, cache, new_state = function(
            _sub(self.params, name),
            _sub(self.state, name),
            x,
            lengths,
            training=training,
            momentum=self.config.batch_norm_momentum,
            **self.kw,
        )
        for key, value in new_state.items():
            self.state[f"{name}/{key}"] = value
        self.tape.append(("batch_norm_conv" if conv else "batch_norm", name, cache))
        return y

    # -- architectures --
    def deepspeech(
        self, features: np.ndarray, lengths: np.ndarray, layer_lengths: Any
    ) -> np.ndarray:
        """``lengths`` on the host; ``layer_lengths`` the same on the features'
        device (``lengths`` itself for a host batch)."""
        from .nn import rnn

        self.lengths = lengths.copy()
        lengths = layer_lengths
        x = stack_context(features, lengths, self.config.n_context)  # (T, B, (2n+1)F)
        # Dense layers zero their padded frames, and clipped ReLU and dropout keep
        # zeros, so no extra masking is needed here.
        for name in ("layer_1", "layer_2", "layer_3"):
            x = self.dropout(self.dense(name, x, lengths, clipped=True))
        x, cache = rnn.forward(
            _sub(self.params, "layer_4"), x, lengths, "lstm", **self.kw
        )  # host or device arrays alike
        self.tape.append(("rnn", "layer_4", cache))
        x = self.dropout(self.dense("layer_5", x, lengths, clipped=True))
        return self.dense("layer_6", x, lengths)  # (T, B, V)

    def ds2(
        self, features: np.ndarray, lengths: np.ndarray, layer_lengths: Any
    ) -> np.ndarray:
        """``lengths`` on the host; ``layer_lengths`` the same on the features'
        device (``lengths`` itself for a host batch), carried through the
        convolutions on each side."""
        from .nn import conv, lookahead, rnn

        on_host = xp_of(features) is np
        x = features[:, :, None, :]  # (T, B, 1, F): one input channel
        for index, (_, _, kernel, stride, padding, _) in enumerate(
            _conv_geometry(self.config, self.network.n_input), start=1
        ):
            name = f"conv_{index}"
            x, cache = conv.forward(
                _sub(self.params, name),
                x,
                layer_lengths,
                stride=stride,
                padding=padding,
                **self.kw,
            )
            self.tape.append(("conv", name, cache))
            lengths = np.asarray(
                conv.output_lengths(lengths, kernel, stride, padding), dtype=np.int32
            )
            layer_lengths = (
                lengths
                if on_host
                else conv.output_lengths(layer_lengths, kernel, stride, padding)
            )
            x = self.batch_norm(f"{name}_bn", x, layer_lengths, True, lengths)
            mask = frame_mask(layer_lengths, x.shape[0], x.dtype)[
                :, :, :, None
            ]  # (T, B, 1, 1)
            x = self.mask(self.hardtanh(x), mask)
        self.lengths = lengths
        T, B, C, F = x.shape
        self.tape.append(("reshape", "", x.shape))
        x = x.reshape(
            T, B, C * F
        )  # (T, B, C x F'): channels and frequencies as features
        mask = frame_mask(layer_lengths, T, x.dtype)  # (T, B, 1)
        bidirectional = self.config.architecture == "ds2"
        for index in range(1, self.config.rnn_layers + 1):
            name = f"rnn_{index}"
            if index > 1:
                x = self.batch_norm(f"{name}_bn", x, layer_lengths, False, lengths)
                x = self.mask(x, mask)
            x, cache = rnn.forward(
                _sub(self.params, name),
                x,
                layer_lengths,
                self.config.rnn_kind,
                bidirectional=bidirectional,
                merge="sum",
                **self.kw,
            )
            self.tape.append(("rnn", name, cache))
            # Between recurrent layers and before the output: the network's only
            # dropout (none in the convolutions, whose batch norms regularise them).
            x = self.dropout(x)
        if self.config.architecture == "ds2-stream":
            x, cache = lookahead.forward(
                _sub(self.params, "lookahead"), x, layer_lengths, **self.kw
            )
            self.tape.append(("lookahead", "lookahead", cache))
            x = self.mask(self.hardtanh(x), mask)
        x = self.batch_norm("output_bn", x, layer_lengths, False, lengths)
        x = self.mask(x, mask)
        return self.dense("output", x, layer_lengths)  # (T', B, V)
