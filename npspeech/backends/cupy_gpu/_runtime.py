"""CuPy at run time: the one place that imports it, checks for a device, and moves
arrays across the host/device boundary.

Host/device policy of every kernel of this backend ("results follow the inputs"):

- called with CuPy arrays, a kernel computes on the device and returns CuPy arrays,
  with no transfer; this is how a device-resident training step calls it. Small host
  arguments next to device ones (a dropout mask drawn by the host RNG, CTC targets)
  are uploaded for the call and the results stay on the device;
- called with NumPy arrays only (a host caller, such as inference on host arrays), it
  copies them to the device, computes there and returns NumPy arrays, so the backend
  is a drop-in replacement for ``numba`` with one transfer each way per kernel call.

Where an ``out=`` buffer or an in-place output is a NumPy array, the result is computed
on the device and copied into it.
"""

from __future__ import annotations

import functools
import inspect
from types import ModuleType

import numpy as np

INSTALL_HINT = "CuPy is not installed (pip install npspeech[gpu])"

_cupy: ModuleType | None = None


class BackendUnavailable(ImportError):
    """CuPy or a CUDA device is missing; ``get_backend`` turns this into a
    :class:`~npspeech.errors.ConfigError` with the same message."""


def load_cupy() -> ModuleType:
    """Import CuPy and check that it sees a CUDA device; the module, once checked.

    Raises
    ------
    BackendUnavailable
        "CuPy is not installed ..." when ``import cupy`` fails for want of the
        package, "CuPy could not load ..." when it is there but its CUDA libraries are
        not, and "no CUDA device ..." when CuPy imports but finds no device.
    """
    global _cupy
    if _cupy is not None:
        return _cupy
    try:
        import cupy
    except ModuleNotFoundError as error:
        if error.name is not None and error.name.split(".")[0] == "cupy":
            raise BackendUnavailable(INSTALL_HINT) from error
        raise BackendUnavailable(f"CuPy could not load: {error}") from error
    except ImportError as error:  # the package is there, its CUDA libraries are not
        raise BackendUnavailable(f"CuPy could not load: {error}") from error
    try:
        count = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as error:  # CUDARuntimeError: no driver, no device, ...
        raise BackendUnavailable(
            f"no CUDA device: CuPy is installed but the CUDA runtime says {error}"
        ) from error
    if count < 1:
        raise BackendUnavailable("no CUDA device: CuPy is installed but sees none")
    _cupy = cupy
    return cupy


def cupy() -> ModuleType:
    """The checked CuPy module (the backend's import has loaded it already)."""
    return _cupy if _cupy is not None else load_cupy()


def is_host(value) -> bool:
    """True for a NumPy array (one not already on the device)."""
    return isinstance(value, np.ndarray) and not isinstance(value, cupy().ndarray)


def to_device(value):
    """NumPy arrays (also inside tuples, lists and dicts) as CuPy arrays; the rest as
    it is."""
    if is_host(value):
        return cupy().asarray(value)
    if isinstance(value, (tuple, list)):
        return type(value)(to_device(v) for v in value)
    if isinstance(value, dict):
        return {key: to_device(v) for key, v in value.items()}
    return value


def to_host(value):
    """CuPy arrays (also inside tuples, lists and dicts) as NumPy arrays."""
    if isinstance(value, cupy().ndarray):
        return value.get()
    if isinstance(value, (tuple, list)):
        return type(value)(to_host(v) for v in value)
    if isinstance(value, dict):
        return {key: to_host(v) for key, v in value.items()}
    return value


def follow_input(out: str | None = None, result: int | None = None):
    """Decorate a device kernel so that its results live where its inputs did.

    Parameters
    ----------
    out : str, optional
        Name of an argument the kernel writes into (an ``out=`` buffer, or the in-place
        output of ``col2im_add``). A NumPy array there is replaced by a device copy for
        the call and receives the result afterwards.
    result : int, optional
        Which of the returned values is that buffer (``None``: the kernel returns the
        buffer alone, or nothing).
    """

    def decorate(kernel):
        signature = inspect.signature(kernel)

        @functools.wraps(kernel)
        def wrapper(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            values = bound.arguments.values()
            if not any(is_host(value) for value in values):
                return kernel(*args, **kwargs)
            host_out = bound.arguments.get(out) if out is not None else None
            if not is_host(host_out) and any(
                isinstance(value, cupy().ndarray) for value in values
            ):
                # device-resident call with small host arguments: results stay put
                return kernel(**{k: to_device(v) for k, v in bound.arguments.items()})
            arguments = {key: to_device(v) for key, v in bound.arguments.items()}
            returned = kernel(**arguments)
            if host_out is not None and is_host(host_out):
                device_out = arguments[out]
                host_out[...] = device_out.get()
                returned = to_host(returned)
                if returned is None:
                    return None
                if result is None:
                    return host_out
                returned = list(returned)
                returned[result] = host_out
                return tuple(returned)
            return to_host(returned)

        wrapper.device_kernel = kernel
        return wrapper

    return decorate
