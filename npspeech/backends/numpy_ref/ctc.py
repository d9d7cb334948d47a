"""CTC loss and its gradient: the readable NumPy reference (the spec of every backend).

Shape legend: T frames, B batch, V classes (blank included), L labels of one
sequence, S = 2 L + 1 states of its extended label sequence (a blank before, between
and after the labels: ``blank, l1, blank, l2, ..., blank``).

The recursions are Graves et al. (2006), "Connectionist temporal classification",
section 4.1, in log space:

- ``log_alpha[t, s]``: log-probability of every path prefix over frames ``0..t`` that
  ends in state ``s`` (emissions up to and including frame ``t``);
- ``log_beta[t, s]``: log-probability of every path suffix over frames ``t+1..T-1``
  that continues from state ``s`` at frame ``t`` to the end (emissions after ``t``
  only, so ``alpha * beta`` counts each frame once);
- a state is entered from itself, from the state before, or (skip) from two states
  before when it holds a label that differs from the label two states back; the skip
  is forbidden into a blank and between equal labels, which is why a repeated label
  needs a blank between its two copies.

The gradient of ``-log P`` with respect to the logits of frame ``t`` is
``softmax(logits[t]) - occupancy[t]``, where ``occupancy[t, k]`` is the posterior
probability that frame ``t`` emits class ``k`` (sum of ``alpha * beta / P`` over the
states that hold ``k``).
"""

from __future__ import annotations

import numpy as np

from .layers import log_softmax_forward

__all__ = ["ctc_loss_and_grad"]


def ctc_loss_and_grad(
    logits: np.ndarray,
    targets: np.ndarray,
    target_offsets: np.ndarray,
    input_lengths: np.ndarray,
    target_lengths: np.ndarray,
    blank: int,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-sequence CTC negative log-likelihood and its gradient w.r.t. the logits.

    The kernel trusts its inputs; :func:`npspeech.ctc.ctc_loss` validates them.
    Log-softmax is applied per frame, so log-probabilities work as logits too.

    Parameters
    ----------
    logits : array, shape (T, B, V), float32 or float64, C-contiguous
        Unnormalised scores (or log-probabilities). Frames ``t >= input_lengths[b]``
        are padding and are never read.
    targets : int32 array, shape (sum L,)
        The labels of every sequence, one after the other.
    target_offsets : int64 array, shape (B,)
        Where the labels of sequence ``b`` start in ``targets``.
    input_lengths : int32 array, shape (B,)
        Valid frames of each sequence, ``<= T``.
    target_lengths : int32 array, shape (B,)
        Labels of each sequence.
    blank : int
        Class id of the blank.
    out : array, shape (T, B, V), dtype of ``logits``, optional
        Buffer that receives the gradient (fully overwritten).

    Returns
    -------
    losses : array, shape (B,), dtype of ``logits``
        ``-log P(target | logits)``; ``inf`` where no alignment exists.
    grad : array, shape (T, B, V), dtype of ``logits``
        ``d losses[b] / d logits[:, b]``; zero on padded frames and for sequences whose
        loss is ``inf``.
    """
    T, B, V = logits.shape
    grad = np.empty_like(logits) if out is None else out
    grad[...] = 0.0
    losses = np.empty(B, dtype=logits.dtype)
    for b in range(B):
        frames = int(input_lengths[b])
        start = int(target_offsets[b])
        labels = targets[start : start + int(target_lengths[b])]
        # float64 inside whatever the input dtype: log-space sums over long inputs
        # would lose digits in float32.
        loss, seq_grad = _sequence(logits[:frames, b].astype(np.float64), labels, blank)
        losses[b] = loss
        grad[:frames, b] = seq_grad
    return losses, grad


def extended_labels(labels: np.ndarray, blank: int) -> np.ndarray:
    """The S = 2 L + 1 states: ``blank, l1, blank, l2, ..., lL, blank`` (int64)."""
    states = np.full(2 * len(labels) + 1, blank, dtype=np.int64)
    states[1::2] = labels
    return states


def skip_allowed(states: np.ndarray, blank: int) -> np.ndarray:
    """``allowed[s]``: state ``s`` may be entered from ``s - 2`` (bool, shape (S,)).

    Only a label state may, and only when its label differs from the one two states
    back: otherwise the two copies of a repeated label would merge into one.
    """
    allowed = np.zeros(len(states), dtype=bool)
    allowed[2:] = (states[2:] != blank) & (states[2:] != states[:-2])
    return allowed


def min_frames(labels: np.ndarray) -> int:
    """Fewest frames that can emit ``labels``: one per label plus a blank per repeat."""
    repeats = int(np.count_nonzero(labels[1:] == labels[:-1])) if len(labels) else 0
    return len(labels) + repeats


def _sequence(
    x: np.ndarray, labels: np.ndarray, blank: int
) -> tuple[float, np.ndarray]:
    """Loss and gradient of one sequence; ``x`` is float64 of shape (T_b, V)."""
    frames, V = x.shape
    grad = np.zeros((frames, V))
    if frames < min_frames(labels):
        return np.inf, grad
    if frames == 0:  # zero frames can only emit the empty target, with probability 1
        return 0.0, grad
    log_probs = log_softmax_forward(x)  # (T_b, V)
    states = extended_labels(labels, blank)  # (S,)
    S = len(states)
    emit = log_probs[:, states]  # (T_b, S): log-probability of each state's class
    skip = skip_allowed(states, blank)

    def predecessors(row: np.ndarray) -> np.ndarray:
        """log of (row[s] + row[s-1] + row[s-2] where the skip is allowed)."""
        step = np.concatenate(([-np.inf], row))[:S]
        jump = np.where(skip, np.concatenate(([-np.inf, -np.inf], row))[:S], -np.inf)
        return np.logaddexp(np.logaddexp(row, step), jump)

    def successors(row: np.ndarray) -> np.ndarray:
        """log of (row[s] + row[s+1] + row[s+2] where s+2 may be entered by a skip)."""
        step = np.concatenate((row[1:], [-np.inf]))
        jump = np.where(skip, row, -np.inf)  # row[s'] reachable from s' - 2
        jump = np.concatenate((jump[2:], [-np.inf, -np.inf]))[:S]
        return np.logaddexp(np.logaddexp(row, step), jump)

    with np.errstate(divide="ignore", invalid="ignore"):
        log_alpha = np.full((frames, S), -np.inf)
        log_alpha[0, :2] = emit[0, :2]  # paths start with the blank or the 1st label
        for t in range(1, frames):
            log_alpha[t] = predecessors(log_alpha[t - 1]) + emit[t]

        log_beta = np.full((frames, S), -np.inf)
        log_beta[-1, -2:] = 0.0  # a path ends with the last label or the final blank
        for t in range(frames - 2, -1, -1):
            log_beta[t] = successors(log_beta[t + 1] + emit[t + 1])

        log_likelihood = np.logaddexp.reduce(log_alpha[-1, -2:])
        if not np.isfinite(log_likelihood):
            return np.inf, grad
        posterior = np.exp(log_alpha + log_beta - log_likelihood)  # (T_b, S)

    occupancy = np.zeros((frames, V))
    for s in range(S):  # states sharing a class add up (every blank state, repeats)
        occupancy[:, states[s]] += posterior[:, s]
    grad = np.exp(log_probs) - occupancy
    return -float(log_likelihood), grad
