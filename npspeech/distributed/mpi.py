"""Data-parallel training over MPI (mpi4py): one rank per process, one model.

Launched as ``mpirun -n N npspeech train ...`` (any MPI with mpi4py built on it; the
``mpi`` extra installs both from wheels). Every rank

1. builds the same bucketed, shuffled plan of global batches from the shared seed and
   prepares each global batch, of which it trains on its rows
   (:meth:`Collective.rows`): a contiguous share, padded only to its own longest;
2. scales its CTC gradient by ``1 / B_global`` (not by its share's size), so that the
   sum over ranks is the gradient of the mean loss over the whole global batch;
3. sums the gradients of all parameters (plus the loss sum and the count of ranks that
   met a non-finite value) in one fused buffer with one ``Allreduce`` per step;
4. clips by the norm of that summed gradient and applies the same Adam step.

So every rank holds the same weights, equal (within the rounding of a changed
summation order) to a single process's on the same global batches. Two things make
the split visible and are documented where they are chosen: dropout masks are drawn by
each rank for its share, and batch normalisation (``ds2``, ``ds2-stream``) uses each
rank's share for its batch statistics (as PyTorch's DistributedDataParallel without
SyncBatchNorm), the running statistics being averaged over the ranks after each step.

Faults end the whole job, never leave a rank waiting: an exception on any rank prints
``rank R of N failed: ...`` and calls ``MPI_Abort``; every collective is non-blocking
and polled against a timeout (:data:`DEFAULT_TIMEOUT`), after which rank 0 names the
ranks that never arrived; a rank killed outright (SIGKILL, the OOM killer) is reported
by the launcher, which ends the others (its report gives the PID, which the start-up
line maps to a rank). Checkpoints are written by rank 0 only and atomically, so the
last one stays whole and resumes, with any number of ranks.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np

from ..errors import ConfigError, NpspeechError
from ..nn._checks import on_device
from .collective import Collective

T = TypeVar("T")

#: Seconds a rank waits in one collective before it ends the job. Covers rank 0
#: writing checkpoints and the model while the others wait at the next step.
DEFAULT_TIMEOUT = 600.0
#: Test-only fault injection: ``RANK:STEP:ACTION`` makes rank RANK, before optimizer
#: step STEP + 1, ``kill`` itself (SIGKILL), ``raise`` an exception or ``hang``.
FAULT_VARIABLE = "NPSPEECH_MPI_TEST_FAULT"
#: Seconds a failing rank waits after printing why, before MPI_Abort ends the job.
ABORT_GRACE_SECONDS = 0.5
_ARRIVAL_TAG = 7301  # point-to-point tag of the "arrived at this collective" tokens
_LONGEST_POLL = 0.002  # seconds between two tests of a pending collective, at most


class MPICollective(Collective):
    """The ranks of an MPI communicator.

    Parameters
    ----------
    comm : mpi4py.MPI.Comm
    timeout : float
        Seconds a rank waits in one collective before ending the job.
    """

    def __init__(self, comm: Any, timeout: float = DEFAULT_TIMEOUT):
        from mpi4py import MPI

        if not timeout > 0:
            raise ConfigError(f"collective timeout must be > 0 s, got {timeout}")
        self._MPI = MPI
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.timeout = float(timeout)
        self._token = np.zeros(1, dtype=np.int64)
        self._tokens = np.zeros(max(self.size - 1, 1), dtype=np.int64)
        self._buffer = np.empty(0, dtype=np.float32)
        self._device: Any = None  # the GPU exchange, made on the first device call
        if self.size > 1:
            sys.excepthook = self._excepthook  # an error outside train() ends all too

    @classmethod
    def from_world(cls, timeout: float | None = None) -> MPICollective:
        """All the processes the launcher started (``MPI.COMM_WORLD``).

        Raises
        ------
        ConfigError
            Where mpi4py (or the MPI library under it) cannot be loaded.
        """
        try:
            from mpi4py import MPI
        except ImportError as error:
            raise ConfigError(
                f"distributed training needs mpi4py and an MPI library ({error}); "
                'install them with pip install "npspeech[mpi]"'
            ) from None
        return cls(MPI.COMM_WORLD, DEFAULT_TIMEOUT if timeout is None else timeout)

    # -- reporting -------------------------------------------------------------------
    def describe(self) -> str:
        """``N ranks over MPI (LIBRARY): rank 0 pid P on HOST, ...``; collective."""
        where = self.allgather((os.getpid(), socket.gethostname()))
        library = self._MPI.Get_library_version().strip().splitlines()[0]
        ranks = ", ".join(
            f"rank {rank} pid {pid} on {host}" for rank, (pid, host) in enumerate(where)
        )
        return f"{self.size} ranks over MPI ({' '.join(library.split())}): {ranks}"

    def _abort(self, message: str) -> None:
        sys.stderr.write(f"npspeech: {message}\n")
        sys.stderr.flush()
        # The launcher forwards each rank's output through a pipe and stops reading
        # when the job is aborted: give it a moment to pass the message on.
        time.sleep(ABORT_GRACE_SECONDS)
        self.comm.Abort(1)
        # MPICH's MPI_Abort may return after telling the launcher to end the job;
        # this rank must not go on (nor report the same failure twice).
        os._exit(1)

    def _excepthook(self, kind: type, error: BaseException, trace: Any) -> None:
        traceback.print_exception(kind, error, trace)
        self._abort(
            f"rank {self.rank} of {self.size} failed ({kind.__name__}: {error}); "
            "ending the job"
        )

    @contextlib.contextmanager
    def failing_together(self, note: Callable[[], str] = str) -> Iterator[None]:
        """An exception here prints ``rank R of N failed`` (and ``note()``, which may
        say how to resume) and aborts the job. An error that every rank raised alike
        (from :meth:`root_call`, marked ``raised_on_every_rank``) passes through: no
        rank is left waiting for it."""
        try:
            yield
        except BaseException as error:  # noqa: BLE001 - KeyboardInterrupt too
            if self.size == 1 or getattr(error, "raised_on_every_rank", False):
                raise
            if not isinstance(error, (NpspeechError, KeyboardInterrupt)):
                traceback.print_exc()
            reason = "interrupted" if isinstance(error, KeyboardInterrupt) else error
            self._abort(
                f"rank {self.rank} of {self.size} failed ({reason}); ending the "
                f"job. {note()}".rstrip()
            )

    def before_step(self, step: int) -> None:
        """Test-only fault injection from :data:`FAULT_VARIABLE`."""
        spec = os.environ.get(FAULT_VARIABLE)
        if not spec:
            return
        rank, at_step, action = spec.split(":")
        if int(rank) != self.rank or int(at_step) != step:
            return
        if action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif action == "raise":
            raise RuntimeError(f"fault injected by {FAULT_VARIABLE} at step {step}")
        elif action == "hang":
            time.sleep(1e6)

    # -- collectives -----------------------------------------------------------------
    def _wait(self, request: Any, what: str) -> None:
        """Complete ``request`` (a pending collective) or end the job after the
        timeout. Ranks other than 0 also send rank 0 a token on arrival, so that rank
        0's timeout message names the ranks that never came."""
        MPI = self._MPI
        if self.rank == 0:
            arrivals = [
                self.comm.Irecv(self._tokens[r - 1 : r], source=r, tag=_ARRIVAL_TAG)
                for r in range(1, self.size)
            ]
        else:
            arrivals = [self.comm.Isend(self._token, dest=0, tag=_ARRIVAL_TAG)]
        requests = [request, *arrivals]
        deadline = time.monotonic() + self.timeout
        pause = 0.0
        while not MPI.Request.Testall(requests):
            if time.monotonic() > deadline:
                if self.rank == 0:
                    missing = [
                        str(r)
                        for r, arrival in enumerate(arrivals, 1)
                        if not arrival.Test()
                    ]
                    who = (
                        f"rank(s) {', '.join(missing)} did not reach"
                        if missing
                        else "a rank died during"
                    )
                else:
                    who = "another rank (dead or stuck) never completed"
                self._abort(
                    f"rank {self.rank} of {self.size}: {who} the {what} within "
                    f"{self.timeout:g} s; ending the job"
                )
            time.sleep(pause)
            pause = min(pause * 2 or 1e-5, _LONGEST_POLL)

    def _meet(self, what: str) -> None:
        """Wait (with the timeout) until every rank has reached this point."""
        self._wait(self.comm.Ibarrier(), what)

    def allreduce_sum(
        self, arrays: Sequence[np.ndarray], what: str = "allreduce"
    ) -> list[np.ndarray]:
        """Sums over the ranks, through one fused buffer and one ``Iallreduce``.

        The buffer has the arrays' common dtype and is reused by the next call: the
        returned arrays are views into it, valid until then. When any array is a CuPy
        array the buffer is on this rank's GPU and summed there
        (:class:`~npspeech.distributed.nccl.DeviceAllreduce`: NCCL, else CUDA-aware
        MPI, else through the host).
        """
        if any(on_device(array) for array in arrays):
            if self._device is None:
                from .nccl import DeviceAllreduce

                self._device = DeviceAllreduce(self.comm, self._meet)
            return self._device.allreduce_sum(arrays, what)
        dtype = np.result_type(*arrays)
        total = sum(int(np.size(a)) for a in arrays)
        if self._buffer.dtype != dtype or self._buffer.size != total:
            self._buffer = np.empty(total, dtype=dtype)
        buffer, offset = self._buffer, 0
        for array in arrays:  # (n,) slices of the flat buffer, in the given order
            buffer[offset : offset + np.size(array)] = np.ravel(array)
            offset += np.size(array)
        MPI = self._MPI
        self._wait(self.comm.Iallreduce(MPI.IN_PLACE, buffer, op=MPI.SUM), what)
        sums, offset = [], 0
        for array in arrays:
            n = int(np.size(array))
            sums.append(buffer[offset : offset + n].reshape(np.shape(array)))
            offset += n
        return sums

    def select_device(self) -> None:
        """Use the GPU numbered by this rank's rank on its node (one GPU per rank)."""
        from .nccl import select_device

        select_device(self.comm)

    def broadcast(self, value: T, what: str = "broadcast") -> T:
        """Rank 0's ``value`` on every rank. Arrays travel out of band (pickle protocol
        5), one ``Bcast`` each, so large states are not copied into one pickle."""
        self._meet(what)
        buffers: list[Any] = []
        header = None
        if self.rank == 0:
            data = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
            buffers = [buffer.raw() for buffer in buffers]
            header = (data, [buffer.nbytes for buffer in buffers])
        data, sizes = self.comm.bcast(header, root=0)
        if self.rank != 0:
            buffers = [bytearray(n) for n in sizes]
        for buffer in buffers:
            self.comm.Bcast([buffer, self._MPI.BYTE], root=0)
        if self.rank == 0:
            return value
        return pickle.loads(data, buffers=buffers)

    def root_call(self, function: Callable[[], T]) -> T:
        """Rank 0 runs ``function``; its result, or its :class:`NpspeechError`, reaches
        every rank (any other exception ends the job through
        :meth:`failing_together`)."""
        outcome: tuple[bool, Any] | None = None
        if self.rank == 0:
            try:
                outcome = (True, function())
            except NpspeechError as error:
                outcome = (False, error)
        ok, payload = self.broadcast(outcome, what="start-up")
        if not ok:
            payload.raised_on_every_rank = True
            raise payload
        return payload

    def allgather(self, value: Any, what: str = "gather") -> list[Any]:
        """Every rank's (picklable) ``value``, in rank order."""
        self._meet(what)
        return self.comm.allgather(value)


__all__ = ["DEFAULT_TIMEOUT", "FAULT_VARIABLE", "MPICollective"]
