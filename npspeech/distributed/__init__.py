"""Work spread over several processes or machines.

- :mod:`npspeech.distributed.collective`: the :class:`Collective` interface the training
  loop talks to, and its single-process implementation (every operation a no-op);
- :mod:`npspeech.distributed.mpi`: data-parallel training over MPI (mpi4py), one rank
  per process.

:func:`get_collective` picks one. mpi4py is imported only when a run is launched under
MPI (or ``mode="mpi"`` asks for it), so a plain run never loads MPI.
"""

from __future__ import annotations

import os

from ..errors import ConfigError
from .collective import Collective
from .dask import transcribe as transcribe

#: Environment variables in which MPI launchers announce the job's size: Open MPI's
#: mpirun, MPICH/Intel MPI's Hydra (mpiexec), PMIx launchers (srun --mpi=pmix, prte)
#: and MVAPICH2.
LAUNCH_SIZE_VARIABLES = (
    "OMPI_COMM_WORLD_SIZE",
    "PMI_SIZE",
    "PMIX_SIZE",
    "MV2_COMM_WORLD_SIZE",
)

MODES = ("auto", "mpi", "none")


def launched_size() -> int:
    """Processes in the MPI job this process was launched in, read from the launcher's
    environment without importing MPI; 1 outside a launcher."""
    for name in LAUNCH_SIZE_VARIABLES:
        value = os.environ.get(name, "")
        if value.strip().isdigit():
            return int(value)
    return 1


def get_collective(mode: str = "auto", *, timeout: float | None = None) -> Collective:
    """The collective for this process.

    Parameters
    ----------
    mode
        ``"auto"``: MPI when a launcher started more than one process
        (:func:`launched_size` > 1), else single-process; ``"mpi"``: MPI whatever the
        size (needs mpi4py); ``"none"``: single-process even under a launcher.
    timeout
        Seconds a rank waits in one collective operation before it ends the job
        (:data:`npspeech.distributed.mpi.DEFAULT_TIMEOUT` when None). Ignored without
        MPI.

    Raises
    ------
    ConfigError
        For an unknown mode, or MPI asked for where mpi4py cannot be imported.
    """
    if mode not in MODES:
        raise ConfigError(
            f"distributed mode must be one of {', '.join(MODES)}, got {mode!r}"
        )
    if mode == "none" or (mode == "auto" and launched_size() <= 1):
        return Collective()
    from . import mpi

    return mpi.MPICollective.from_world(timeout=timeout)


__all__ = ["Collective", "get_collective", "launched_size", "MODES"]
