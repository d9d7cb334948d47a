"""The gradient exchange on the GPUs: one GPU per rank, one fused device buffer, NCCL.

With the cupy backend the training step keeps its gradients on the device
(:mod:`npspeech.train_device`); :meth:`MPICollective.allreduce_sum
<npspeech.distributed.mpi.MPICollective.allreduce_sum>` hands device arrays to
:class:`DeviceAllreduce`, which

1. packs them (and the few host scalars of the step: loss sum, problem count, rows)
   into one flat device buffer of their common dtype (:func:`pack`);
2. sums it over the ranks in place: through NCCL (``cupy.cuda.nccl``; the communicator
   is made once from a unique id that rank 0 draws and MPI broadcasts), or, where CuPy
   has no NCCL, through ``MPI_Allreduce`` on the device pointer when the MPI library
   says it is CUDA-aware, else through a host copy of the buffer;
3. returns views of the buffer for the device inputs and host copies for the host
   inputs (:func:`unpack`).

Every rank first meets the others at a polled MPI barrier (with the collective's
timeout), so a rank that died or hangs before the exchange ends the job with its name,
as on the CPU, instead of leaving the others blocked inside NCCL.

Each rank drives the GPU numbered by its *local* rank (its rank among the processes of
its node, :func:`local_rank`), so ``mpirun -n 8`` on a node with 8 GPUs uses each once.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np

from ..errors import ConfigError

#: Where launchers announce a process's rank among those of its node: Open MPI,
#: MPICH/Intel MPI (Hydra), PMIx, MVAPICH2, Slurm's srun.
LOCAL_RANK_VARIABLES = (
    "OMPI_COMM_WORLD_LOCAL_RANK",
    "MPI_LOCALRANKID",
    "PMIX_LOCAL_RANK",
    "MV2_COMM_WORLD_LOCAL_RANK",
    "SLURM_LOCALID",
)


def local_rank(comm: Any = None, environ: Any = None) -> int:
    """This process's rank among the ranks on its node.

    Read from the launcher's environment; without one, from ``comm`` split by shared
    memory (``MPI_COMM_TYPE_SHARED``); 0 when neither is there.
    """
    environ = os.environ if environ is None else environ
    for name in LOCAL_RANK_VARIABLES:
        value = str(environ.get(name, "")).strip()
        if value.isdigit():
            return int(value)
    if comm is None:
        return 0
    from mpi4py import MPI

    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        return int(node.Get_rank())
    finally:
        node.Free()


def device_for(rank_on_node: int, device_count: int) -> int:
    """The GPU of the rank ``rank_on_node`` of its node: one GPU per rank.

    Raises
    ------
    ConfigError
        When the node has fewer GPUs than ranks (two ranks on one GPU would halve
        its memory and serialise its work without saying so).
    """
    if device_count < 1:
        raise ConfigError("no CUDA device for this rank")
    if rank_on_node >= device_count:
        raise ConfigError(
            f"rank {rank_on_node} of its node has no GPU of its own: the node has "
            f"{device_count}; start at most {device_count} ranks per node "
            "(e.g. mpirun --map-by ppr:N:node)"
        )
    return rank_on_node


def select_device(comm: Any = None) -> int:
    """Make this rank's GPU CuPy's current device; its number."""
    from ..backends.cupy_gpu._runtime import cupy

    xp = cupy()
    index = device_for(local_rank(comm), int(xp.cuda.runtime.getDeviceCount()))
    xp.cuda.Device(index).use()
    return index


def pack(arrays: Sequence[Any], xp: ModuleType, buffer: Any = None) -> Any:
    """The arrays one after another in a flat buffer of ``xp`` (numpy or cupy).

    Parameters
    ----------
    arrays
        Any shapes; host (NumPy) arrays are copied into a device buffer as well.
    xp
        The buffer's array module.
    buffer
        A flat buffer to reuse when its size and dtype fit (else a new one).

    Returns
    -------
    (sum of sizes,) array of the arrays' common dtype
    """
    dtype = np.result_type(*(np.dtype(a.dtype) for a in arrays))
    total = sum(int(a.size) for a in arrays)
    if buffer is None or buffer.dtype != dtype or buffer.size != total:
        buffer = xp.empty(total, dtype=dtype)
    offset = 0
    for array in arrays:  # (n,) slices of the flat buffer, in the given order
        n = int(array.size)
        buffer[offset : offset + n] = xp.asarray(array).reshape(-1)
        offset += n
    return buffer


def unpack(buffer: Any, arrays: Sequence[Any], xp: ModuleType) -> list[Any]:
    """The slices of ``buffer`` shaped as ``arrays``: views for arrays of ``xp``
    (valid until the buffer is reused), host copies for NumPy arrays when ``xp`` is
    not NumPy (so the caller gets each sum where it gave the array)."""
    sums, offset = [], 0
    for array in arrays:
        n = int(array.size)
        view = buffer[offset : offset + n].reshape(array.shape)
        if xp is not np and not isinstance(array, xp.ndarray):
            view = view.get()
        sums.append(view)
        offset += n
    return sums


class DeviceAllreduce:
    """Sums over the ranks of an MPI communicator, of arrays on each rank's GPU.

    Parameters
    ----------
    comm : mpi4py.MPI.Comm
    meet : callable
        ``meet(what)`` returns once every rank has arrived, or ends the job with a
        timeout naming the missing ranks (:meth:`MPICollective._meet`).
    """

    def __init__(self, comm: Any, meet: Any):
        from ..backends.cupy_gpu._runtime import cupy

        self.xp = cupy()
        self.comm = comm
        self.meet = meet
        self.buffer = None
        self.nccl = _nccl_module(self.xp)
        self.method = "nccl" if self.nccl is not None else _mpi_method()
        self.communicator = None
        if self.nccl is not None:
            unique_id = self.nccl.get_unique_id() if comm.Get_rank() == 0 else None
            unique_id = comm.bcast(unique_id, root=0)
            self.communicator = self.nccl.NcclCommunicator(
                comm.Get_size(), unique_id, comm.Get_rank()
            )

    def allreduce_sum(self, arrays: Sequence[Any], what: str) -> list[Any]:
        """Element-wise sums of ``arrays`` over the ranks, exchanged as one buffer:
        device views for device inputs, host arrays for host inputs."""
        xp = self.xp
        self.buffer = buffer = pack(arrays, xp, self.buffer)
        self.meet(what)  # nobody enters the exchange before everyone can
        if self.method == "nccl":
            stream = xp.cuda.get_current_stream()
            self.communicator.allReduce(
                buffer.data.ptr,
                buffer.data.ptr,
                buffer.size,
                _NCCL_DTYPES[buffer.dtype.name](self.nccl),
                self.nccl.NCCL_SUM,
                stream.ptr,
            )
            stream.synchronize()
        elif self.method == "cuda-aware-mpi":
            from mpi4py import MPI

            xp.cuda.get_current_stream().synchronize()
            self.comm.Allreduce(MPI.IN_PLACE, buffer, op=MPI.SUM)
        else:  # a plain MPI: through the host
            from mpi4py import MPI

            host = buffer.get()
            self.comm.Allreduce(MPI.IN_PLACE, host, op=MPI.SUM)
            buffer[...] = xp.asarray(host)
        return unpack(buffer, arrays, xp)


_NCCL_DTYPES = {
    "float32": lambda nccl: nccl.NCCL_FLOAT32,
    "float64": lambda nccl: nccl.NCCL_FLOAT64,
}


def _nccl_module(xp: ModuleType) -> ModuleType | None:
    """``cupy.cuda.nccl`` where CuPy was built with NCCL, else None."""
    try:
        from cupy.cuda import nccl
    except ImportError:
        return None
    return nccl if getattr(nccl, "available", True) else None


def _mpi_method() -> str:
    """``cuda-aware-mpi`` where the MPI library says it reads device memory (mpi4py
    4's ``MPI.Query_cuda_support``), else ``host``."""
    from mpi4py import MPI

    query = getattr(MPI, "Query_cuda_support", None)
    try:
        return "cuda-aware-mpi" if query is not None and query() else "host"
    except Exception:  # an MPI without the MPIX extension
        return "host"


__all__ = [
    "DeviceAllreduce",
    "LOCAL_RANK_VARIABLES",
    "device_for",
    "local_rank",
    "pack",
    "select_device",
    "unpack",
]
