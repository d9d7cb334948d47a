"""Batch-norm running statistics recomputed from training data with fixed weights.

Training updates each batch norm's running statistics by an exponential average,
``running = 0.9 running + 0.1 batch`` (PyTorch's momentum): at the end of an epoch they
mostly describe its last ten or so batches. Batches are bucketed by length, so on a
corpus mixing short and long utterances (isolated digits and read sentences) the last
batches are all of one kind, and evaluation normalises every utterance with statistics
of that kind. Measured on a ``ds2-stream`` model of the kathleen + fsdd recipe, the dev
CTC loss was 60.1 with the running statistics, 24.3 with the statistics recomputed here
and 18.4 with each dev batch's own (see ``benchmarks/RESULTS.md``).

:func:`recompute` runs the network in training mode over a sample of training
utterances, without changing a weight, and returns the frame-weighted mean of the
per-batch statistics: what the running averages estimate, over the whole sample
instead of the last few batches ("precise BN", Wu and Johnson 2021, "Rethinking
'Batch' in BatchNorm"). The trainer calls it before each dev evaluation when
``train.batch_norm_utterances > 0``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import models


def sample_indices(n_utterances: int, count: int, seed: int, epoch: int) -> np.ndarray:
    """``min(count, n_utterances)`` distinct indices drawn from ``(seed, epoch)``,
    sorted; all of them when ``count >= n_utterances``."""
    if count >= n_utterances:
        return np.arange(n_utterances)
    rng = np.random.default_rng([seed, epoch, 0xB7])
    return np.sort(rng.choice(n_utterances, size=count, replace=False))


def recompute(
    network: models.Network,
    features: Sequence[np.ndarray],
    *,
    frames_budget: int,
    max_batch_size: int | None = None,
    backend: Any = None,
) -> dict[str, np.ndarray]:
    """Batch-norm state from the batches of ``features``, the weights unchanged.

    Parameters
    ----------
    network : Network
        On the host. Its ``state`` is read for names and dtypes only.
    features : sequence of array, each (T_u, F) float32
        Unaugmented features of the utterances to average over.
    frames_budget, max_batch_size
        Batches are formed as in training (length buckets under the padded-frames
        budget), so each batch's statistics are those a training step would see.
    backend : str or module, optional
        Kernel backend for the forward passes.

    Returns
    -------
    dict of str to ndarray
        Every entry of ``network.state``: ``NAME/running_mean`` and
        ``NAME/running_var`` (the unbiased batch variance, as training keeps) averaged
        over the batches with each batch weighted by its valid frames.
    """
    from . import data

    if not network.state or not features:
        return dict(network.state)
    # Momentum 1 makes each forward pass return exactly its batch's statistics.
    probe = dataclasses.replace(
        network, config=dataclasses.replace(network.config, batch_norm_momentum=1.0)
    )
    plan = data.make_batches(
        [f.shape[0] for f in features],
        frames_budget,
        max_batch_size=max_batch_size,
        shuffle=False,
    )
    sums = {
        name: np.zeros(value.shape, dtype=np.float64)
        for name, value in network.state.items()
    }
    total = 0
    rng = np.random.default_rng(0)  # dropout masks, if the network has dropout
    for batch in plan:
        padded, lengths = data.pad([features[i] for i in batch], network.dtype)
        _, _, cache = models.forward(
            probe, padded, lengths, training=True, rng=rng, backend=backend
        )
        weight = int(lengths.sum())
        for name in sums:
            sums[name] += weight * np.asarray(cache.state[name], dtype=np.float64)
        total += weight
    return {
        name: (sums[name] / total).astype(network.state[name].dtype) for name in sums
    }
