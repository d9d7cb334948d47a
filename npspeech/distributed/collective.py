"""What the training loop asks of its fellow processes, and the single-process answer.

:class:`Collective` is the interface :mod:`npspeech.train` talks to. This base class is
the single-process implementation: one rank, every operation the identity, so a plain
run computes exactly what it did before data-parallel training existed.
:class:`npspeech.distributed.mpi.MPICollective` implements it over MPI.

The data-parallel contract (see :mod:`npspeech.distributed.mpi`): every rank builds the
same global batch, trains on :meth:`Collective.rows` of it, and the gradients summed by
:meth:`Collective.allreduce_sum` give every rank the same update; rank 0
(:attr:`Collective.is_root`) alone writes files.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")


class Collective:
    """A group of ``size`` cooperating processes; this one is ``rank``.

    The base class is a group of one.
    """

    rank: int = 0
    size: int = 1

    @property
    def is_root(self) -> bool:
        """Whether this rank writes files and talks to the user (rank 0)."""
        return self.rank == 0

    def describe(self) -> str:
        """A line naming the group for the user (empty for a single process)."""
        return ""

    def rows(self, n: int) -> slice:
        """This rank's contiguous share of ``n`` rows (utterances of a global batch).

        Shares differ in size by one at most; the first ``n % size`` ranks take one
        more, and a rank gets an empty slice when ``n < size``.
        """
        base, extra = divmod(n, self.size)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (self.rank < extra))

    def spread(self, lengths: Sequence[float]) -> list[int]:
        """Indices of the items this rank handles when ``len(lengths)`` items of the
        given lengths are shared for throughput (dev evaluation): dealt round-robin in
        order of length, so every rank gets a similar amount of audio."""
        order = np.argsort(np.asarray(lengths, dtype=np.float64), kind="stable")
        return sorted(int(i) for i in order[self.rank :: self.size])

    def allreduce_sum(
        self, arrays: Sequence[np.ndarray], what: str = "allreduce"
    ) -> list[np.ndarray]:
        """Element-wise sums over the ranks of each array, exchanged as one buffer.

        Parameters
        ----------
        arrays
            Any shapes; the same shapes, order and dtypes on every rank.
        what
            Names the exchange in a timeout message.

        Returns
        -------
        list of ndarray
            The sums, shaped and typed as the inputs (the inputs themselves here);
            CuPy inputs give CuPy sums, summed on the devices.
        """
        return list(arrays)

    def select_device(self) -> None:
        """Make this rank's GPU the current CUDA device, before a device-resident
        step allocates anything (one GPU per rank); a single process keeps CuPy's
        current device."""

    def broadcast(self, value: T) -> T:
        """Rank 0's ``value`` on every rank (arrays included)."""
        return value

    def root_call(self, function: Callable[[], T]) -> T:
        """Run ``function`` on rank 0 and give every rank its result, or raise its
        :class:`~npspeech.errors.NpspeechError` on every rank, marked
        ``raised_on_every_rank = True`` (so that an error in rank-0-only work such as
        reading a checkpoint ends all ranks the same way)."""
        return function()

    def allgather(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order, on every rank."""
        return [value]

    def before_step(self, step: int) -> None:
        """Called before optimizer step ``step + 1`` (fault injection in tests)."""

    @contextlib.contextmanager
    def failing_together(self, note: Callable[[], str] = str) -> Iterator[None]:
        """Context in which an exception on one rank ends the whole group, the
        message followed by ``note()``.

        A single process just lets the exception through.
        """
        yield


__all__ = ["Collective"]
