"""int8 models: symmetric per-output-channel weights, float activations.

``npspeech quantize MODEL -o MODEL_INT8`` (:func:`quantize_file`) stores every weight
matrix of a model (dense layers, the recurrent layers' input and recurrent weights,
convolutions) as int8 with one float32 scale per output channel:

``scale[j] = max_k |W[k, j]| / 127``, ``q[k, j] = round(W[k, j] / scale[j])``, so that
``q`` lies in [-127, 127] and ``|W - q * scale| <= scale / 2`` element by element. The
output channel is a dense or recurrent weight's column (``W`` is (F_in, F_out), so
each output unit keeps its own range) and a convolution's output channel (``W`` is
(C_out, C_in, kt, kf)). Biases, batch-norm statistics and DeepSpeech2's small lookahead
weight stay float32. A column of zeros gets scale 1 (and ``q`` 0).

Activations stay float32: the kernels multiply float activations by the int8 weights
converted to float as they are loaded, then scale each output column. Streaming is
bound by reading the weights once per frame, and the int8 weight is a quarter of the
bytes; the multiply-adds are float32 as before, so there is no per-step activation
rounding to add error.

In memory a loaded int8 model is a :class:`QuantizedNetwork`: its ``params`` hold the
dequantized weights ``q * scale`` in float32 (so everything that reads a network works
unchanged) and :attr:`QuantizedNetwork.quantized` names the int8 ones;
:class:`npspeech.runtime.InferenceNetwork` then runs those layers on int8 kernels.
Quantising ``q * scale`` again gives back ``q`` and ``scale`` exactly (the column's
largest value is ``127 * scale``), so nothing is lost between file and kernels.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import numpy as np

from .errors import ConfigError, ModelFileError
from .models import Network

__all__ = [
    "INT8_MAX",
    "SCHEME",
    "QuantizedNetwork",
    "quantize_columns",
    "dequantize",
    "quantizable",
    "output_axis",
    "quantize_network",
    "float_network",
    "quantize_file",
]

INT8_MAX = 127  # symmetric: -128 is never used, so q and -q are both representable
#: What a model file records as its weights' quantisation.
SCHEME = "int8-symmetric-per-output-channel"

# params that are weight matrices: dense W, recurrent W_ih / W_hh (either direction),
# convolution W; not biases, batch norms or the lookahead's per-unit weights
_QUANTIZABLE = re.compile(
    r"^(layer_\d+|output|rnn_\d+|conv_\d+)/(W|W_ih|W_hh)(_reverse)?$"
)


def quantizable(name: str) -> bool:
    """True for the params :func:`quantize_network` stores as int8."""
    return _QUANTIZABLE.match(name) is not None


def output_axis(name: str) -> int:
    """The axis of ``name``'s output channels: 0 for a convolution's
    (C_out, C_in, kt, kf), 1 for the (F_in, F_out) matrices."""
    return 0 if name.startswith("conv_") else 1


def quantize_columns(W: np.ndarray, axis: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 quantisation with one scale per index of ``axis``.

    Parameters
    ----------
    W : float array
        Any shape; finite.
    axis : int
        The output-channel axis.

    Returns
    -------
    q : int8 array, W's shape
        ``round(W / scale)`` in [-127, 127] (scale broadcast along ``axis``).
    scale : float32 array, shape (W.shape[axis],)
        ``max |W| / 127`` over every other axis; 1 where that maximum is 0.

    Raises
    ------
    ConfigError
        When ``W`` holds a NaN or an infinity.
    """
    W = np.asarray(W, dtype=np.float32)
    if not np.all(np.isfinite(W)):
        raise ConfigError("cannot quantise a weight that holds NaN or infinity")
    axis = axis % W.ndim
    others = tuple(i for i in range(W.ndim) if i != axis)
    largest = np.max(np.abs(W), axis=others) if W.size else np.zeros(W.shape[axis])
    scale = (largest / np.float32(INT8_MAX)).astype(np.float32)
    scale[scale == 0] = 1.0
    shape = [1] * W.ndim
    shape[axis] = -1
    q = np.rint(W / scale.reshape(shape))
    return np.clip(q, -INT8_MAX, INT8_MAX).astype(np.int8), scale


def dequantize(q: np.ndarray, scale: np.ndarray, axis: int = 1) -> np.ndarray:
    """``q * scale`` in float32, ``scale`` broadcast along ``axis``."""
    shape = [1] * q.ndim
    shape[axis % q.ndim] = -1
    return q.astype(np.float32) * np.asarray(scale, dtype=np.float32).reshape(shape)


@dataclasses.dataclass
class QuantizedNetwork(Network):
    """A :class:`~npspeech.models.Network` whose weight matrices are int8.

    ``params`` holds the dequantized float32 weights (``q * scale``); ``quantized``
    names the params that are int8 in the file and that the inference runtime runs
    on int8 kernels (it recovers ``q`` and ``scale`` exactly with
    :func:`quantize_columns`).
    """

    quantized: tuple[str, ...] = ()


def quantize_network(network: Network) -> QuantizedNetwork:
    """Every weight matrix of ``network`` rounded to int8 per output channel.

    Returns
    -------
    QuantizedNetwork
        Float32 params equal to ``q * scale`` for the quantised weights, the rest
        (biases, batch norms, lookahead) as float32 copies; the same state.
    """
    params = {}
    names = []
    for name, value in network.params.items():
        if quantizable(name):
            axis = output_axis(name)
            q, scale = quantize_columns(value, axis)
            params[name] = dequantize(q, scale, axis)
            names.append(name)
        else:
            params[name] = np.asarray(value, dtype=np.float32).copy()
    state = {
        name: np.asarray(v, dtype=np.float32).copy()
        for name, v in network.state.items()
    }
    return QuantizedNetwork(
        network.config,
        network.n_input,
        network.n_classes,
        params,
        state,
        quantized=tuple(sorted(names)),
    )


def float_network(network: Network) -> Network:
    """``network`` as a plain float32 :class:`Network`: a QuantizedNetwork's
    dequantized weights (``q * scale``) with nothing marked int8, for training to move
    off the int8 grid (saving a QuantizedNetwork would round them back). Any other
    network is returned as it is."""
    if not isinstance(network, QuantizedNetwork):
        return network
    return Network(
        network.config,
        network.n_input,
        network.n_classes,
        dict(network.params),
        dict(network.state),
    )


def quantize_file(
    source: str | os.PathLike,
    target: str | os.PathLike,
    overwrite: bool = False,
) -> Path:
    """Write an int8 copy of the model file ``source`` to ``target`` (atomically).

    The training record is kept, with ``quantized_from`` (the source file's name) and
    the scheme added.

    Raises
    ------
    ModelFileError
        ``source`` is missing, not a model file or already int8; ``target`` exists and
        ``overwrite`` is false; or ``target`` is ``source``.
    """
    from . import modelfile

    source, target = Path(source), Path(target)
    loaded = modelfile.load(source)
    if isinstance(loaded.network, QuantizedNetwork):
        raise ModelFileError(f"{source}: the model is already int8 ({SCHEME})")
    if target.exists() and target.resolve() == source.resolve():
        raise ModelFileError(
            f"{target}: the output would replace the model it is made from; "
            "choose another path"
        )
    if target.exists() and not overwrite:
        raise ModelFileError(
            f"{target}: already exists; pass --overwrite to replace it"
        )
    training = dict(loaded.training)
    training["quantized_from"] = source.name
    training["quantization"] = SCHEME
    quantized = modelfile.ModelFile(
        quantize_network(loaded.network), loaded.features, loaded.alphabet, training
    )
    return modelfile.save(target, quantized)
