"""The data-parallel parts of a training step, over any :class:`Collective`.

:mod:`npspeech.train` computes each rank's gradient on its rows of the global batch
(:func:`batch_rows`), scaled by ``1 / B_global``; :func:`sum_over_ranks` sums the
gradients (and the loss sum and the count of ranks that met a non-finite value) in one
fused exchange, so that every rank holds the single-process gradient of the whole
batch; :func:`gather_evaluation` joins the dev rows each rank scored.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from .collective import Collective


@dataclasses.dataclass
class LocalGradients:
    """What one rank's rows of a global batch give before the ranks exchange."""

    grads: dict[str, np.ndarray]  # name -> array shaped as the parameter
    loss_sum: float  # summed CTC loss of the rows (nats)
    problem: str  # why the batch must be skipped ("" when it need not)
    state: dict[str, np.ndarray]  # batch-norm running statistics after the forward
    rows: int  # utterances this rank trained on


def batch_rows(batch: Any, rows: slice) -> Any:
    """The utterances ``rows`` of a :class:`~npspeech.data.Batch` as a batch of their
    own, padded only to their own longest (padding changes no result).

    Returns
    -------
    Batch or None
        ``features (T_b, b, F)`` float32 C-contiguous, ``lengths (b,)``,
        ``targets (sum L_b,)``, ``target_lengths (b,)``; None for an empty slice.
    """
    from ..data import Batch

    lengths = batch.lengths[rows]  # (b,)
    if lengths.size == 0:
        return None
    bounds = np.concatenate([[0], np.cumsum(batch.target_lengths)])  # (B + 1,)
    start, stop = rows.indices(len(batch.lengths))[:2]
    features = batch.features[: int(lengths.max()), rows]  # (T_b, b, F) view
    return Batch(
        features=np.ascontiguousarray(features),
        lengths=lengths,
        targets=batch.targets[bounds[start] : bounds[stop]],
        target_lengths=batch.target_lengths[rows],
        utterances=batch.utterances[rows],
        transcripts=batch.transcripts[rows],
    )


def sum_over_ranks(
    collective: Collective,
    local: LocalGradients,
    state_template: dict[str, np.ndarray],
    what: str,
) -> tuple[dict[str, np.ndarray], float, bool, dict[str, np.ndarray]]:
    """Sum the ranks' gradients, loss sums and problems in one exchange.

    Batch-norm running statistics are averaged over the ranks weighted by their rows
    (a rank without rows has weight 0), so that every replica keeps the same.

    Parameters
    ----------
    collective
    local
        This rank's part; ``grads`` with the same names, shapes and dtypes on every
        rank.
    state_template
        The network's current state: names and dtypes of the running statistics.
    what
        Names the exchange in a timeout message.

    Returns
    -------
    grads : dict of ndarray
        The summed gradients (views into the exchange buffer, valid until the next
        exchange).
    loss_sum : float
        The summed CTC loss of the global batch.
    problem : bool
        Whether any rank met a non-finite output or loss (then all skip the batch).
    state : dict of ndarray
        The averaged running statistics.
    """
    names = sorted(local.grads)
    state_names = sorted(state_template)
    dtype = np.result_type(*(local.grads[name] for name in names))
    n = dtype.type(local.rows)
    # (3,): loss sum, ranks with a problem, rows (the weights of the statistics)
    scalars = np.array([local.loss_sum, bool(local.problem), local.rows], dtype=dtype)
    weighted = [local.state[name] * n for name in state_names]
    sums = collective.allreduce_sum(
        [*(local.grads[name] for name in names), *weighted, scalars], what=what
    )
    grads = dict(zip(names, sums[: len(names)], strict=True))
    total = sums[-1]
    rows_total = max(float(total[2]), 1.0)
    averaged = {
        name: (value / value.dtype.type(rows_total)).astype(
            state_template[name].dtype, copy=False
        )
        for name, value in zip(state_names, sums[len(names) : -1], strict=True)
    }
    return grads, float(total[0]), bool(total[1] > 0), averaged


def gather_evaluation(
    collective: Collective, indices: Sequence[int], evaluation: Any
) -> Any:
    """Join the dev rows every rank scored into one corpus evaluation.

    Parameters
    ----------
    indices
        The corpus rows this rank scored (:meth:`Collective.spread`).
    evaluation
        Its :class:`~npspeech.inference.Evaluation` of them (None when it had none).

    Returns
    -------
    Evaluation
        Rows in corpus order, scored as :func:`npspeech.inference.evaluate` scores
        its own; the same on every rank.
    """
    from ..inference import Evaluation
    from ..metrics import ErrorCounts

    mine = [] if evaluation is None else evaluation.utterances
    gathered = collective.allgather(list(zip(indices, mine, strict=True)))
    rows = [row for _, row in sorted(pair for part in gathered for pair in part)]
    total = ErrorCounts(
        sum(r.word_edits for r in rows),
        sum(r.words for r in rows),
        sum(r.char_edits for r in rows),
        sum(r.chars for r in rows),
    )
    finite = [r.loss for r in rows if np.isfinite(r.loss)]
    loss = float(np.mean(finite)) if finite else float("inf")
    return Evaluation(total.wer, total.cer, loss, rows)


__all__ = ["LocalGradients", "batch_rows", "gather_evaluation", "sum_over_ranks"]
