"""CTC loss and its gradient: Numba CPU kernel, parallel over the batch.

Computes what ``numpy_ref.ctc`` specifies (see its module docstring for the states,
the recursions and the shape legend) by a faster route, the scaled forward-backward
of Rabiner (1989) that Graves (2006, section 4.1) recommends for CTC: alpha and beta
stay in *linear* space, each frame's alpha row divided by its sum (beta shares those
factors), and the log-likelihood is the sum of the logs of the sums. That costs one
``log`` per frame instead of a log-sum-exp per lattice cell. Everything is
accumulated in float64 whatever the input dtype, so float32 inputs of thousands
of frames stay accurate.

Linear space can underflow where log space would not: a frame whose reachable
states all have probabilities below ~1e-280 (log-probability gaps of more than ~645
nats, only reachable with extreme logits), or posterior mass on states whose scaled
alpha fell below float64's range. Each frame's normaliser and posterior sum are
checked, and a sequence whose check fails is recomputed by the log-space recursion
of the reference, so the result is always the log-space one; ordinary inputs never
take that path.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

__all__ = ["ctc_loss_and_grad"]

# A per-frame normaliser below this means linear space may have lost mass to
# underflow (float64's smallest normal is 2.2e-308; 1e-280 leaves 28 digits of room).
_UNDERFLOW = 1e-280
# The posterior of every frame sums to 1; a larger deviation means lost mass.
_MASS_TOLERANCE = 1e-6
# Signal from the scaled path that the sequence must be redone in log space.
_RETRY = -1.0


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

    Same arguments and results as ``numpy_ref.ctc_loss_and_grad``: ``logits`` (T, B, V)
    float32/float64 C-contiguous, ``targets`` (sum L,) int32, ``target_offsets`` (B,)
    int64, ``input_lengths`` and ``target_lengths`` (B,) int32, ``blank`` int, optional
    ``out`` (T, B, V) for the gradient; returns ``losses`` (B,) and ``grad`` (T, B, V),
    both of the dtype of ``logits``. Inputs are trusted, not validated.
    """
    grad = np.empty_like(logits) if out is None else out
    losses = np.empty(logits.shape[1], dtype=logits.dtype)
    _batch(
        logits, targets, target_offsets, input_lengths, target_lengths, blank,
        losses, grad,
    )  # fmt: skip
    return losses, grad


@njit(parallel=True, cache=True)
def _batch(logits, targets, target_offsets, input_lengths, target_lengths, blank,
           losses, grad):  # fmt: skip
    """Fill ``losses`` (B,) and ``grad`` (T, B, V), one sequence per parallel task."""
    T, B, V = logits.shape
    for b in prange(B):
        frames = input_lengths[b]
        L = target_lengths[b]
        start = target_offsets[b]
        S = 2 * L + 1
        states = np.full(S, blank, dtype=np.int64)  # blank, l1, blank, ..., lL, blank
        skip = np.zeros(S, dtype=np.bool_)  # state s may be entered from s - 2
        repeats = 0
        for i in range(L):
            states[2 * i + 1] = targets[start + i]
            if i > 0:
                if targets[start + i] == targets[start + i - 1]:
                    repeats += 1  # needs a blank in between: one more frame
                else:
                    skip[2 * i + 1] = True
        for t in range(frames, T):  # padding: zero gradient
            for k in range(V):
                grad[t, b, k] = 0.0
        if frames < L + repeats:  # no alignment fits in the frames
            losses[b] = math.inf
            _zero_frames(grad, b, frames)
        elif frames == 0:  # the empty target in zero frames: probability 1
            losses[b] = 0.0
        else:
            loss = _scaled_sequence(logits, b, frames, states, skip, grad)
            if loss == _RETRY:
                loss = _log_space_sequence(logits, b, frames, states, skip, grad)
            losses[b] = loss


@njit(cache=True)
def _zero_frames(grad, b, frames):
    """Zero ``grad[:frames, b]``."""
    for t in range(frames):
        for k in range(grad.shape[2]):
            grad[t, b, k] = 0.0


@njit(cache=True)
def _band(t, frames, S):
    """States ``[lo, hi)`` that are reachable at frame ``t`` and can still finish.

    A path advances at most two states a frame, starts in state 0 or 1 and ends in
    state S - 2 or S - 1; every state outside the band has alpha * beta = 0.
    """
    return max(0, S - 2 * (frames - t)), min(S, 2 * t + 2)


@njit(cache=True)
def _softmax_rows(logits, b, frames):
    """Softmax of ``logits[:frames, b]`` in float64, shape (frames, V)."""
    V = logits.shape[2]
    probs = np.empty((frames, V))
    for t in range(frames):
        peak = np.float64(logits[t, b, 0])
        for k in range(1, V):
            peak = max(peak, np.float64(logits[t, b, k]))
        total = 0.0
        for k in range(V):
            e = math.exp(np.float64(logits[t, b, k]) - peak)
            probs[t, k] = e
            total += e
        scale = 1.0 / total
        for k in range(V):
            probs[t, k] *= scale
    return probs


@njit(cache=True)
def _scaled_sequence(logits, b, frames, states, skip, grad):
    """Loss of sequence ``b`` and its gradient into ``grad[:frames, b]``.

    Returns ``_RETRY`` where a check finds mass lost to underflow or overflow.
    """
    V = logits.shape[2]
    S = states.shape[0]
    blank = states[0]
    probs = _softmax_rows(logits, b, frames)  # (frames, V)
    # 1.0 where the skip s - 2 -> s is allowed: a multiply instead of a branch keeps
    # the state loops free of conditionals; two zeros of padding for s + 2 <= S + 1.
    skip_weight = np.zeros(S + 2)
    for s in range(S):
        if skip[s]:
            skip_weight[s] = 1.0

    # Forward: alpha[t] = alpha_t / C_t with C_t = c_0 c_1 ... c_t, where c_t makes
    # each row sum to one; log P = sum of log c_t. Only the band of each frame is
    # written; the zeros elsewhere are the (exact) alpha of states that cannot lie
    # on a complete path.
    alpha = np.zeros((frames, S))
    inverse_scales = np.empty(frames)  # 1 / c_t
    log_likelihood = 0.0
    for t in range(frames):
        lo, hi = _band(t, frames, S)
        current = alpha[t]
        total = 0.0  # summed in the same pass: each extra pass over S costs more
        if t == 0:
            for s in range(lo, hi):  # s is 0 or 1: a path starts there
                value = probs[0, states[s]]
                current[s] = value
                total += value
        else:
            previous = alpha[t - 1]
            for s in range(lo, min(hi, 2)):  # no skip into states 0 and 1
                value = previous[s]
                if s == 1:
                    value += previous[0]
                value *= probs[t, states[s]]
                current[s] = value
                total += value
            for s in range(max(lo, 2), hi):
                value = previous[s] + previous[s - 1] + skip_weight[s] * previous[s - 2]
                value *= probs[t, states[s]]
                current[s] = value
                total += value
        if total < _UNDERFLOW:
            return _RETRY
        scale = 1.0 / total
        for s in range(lo, hi):
            current[s] *= scale
        inverse_scales[t] = scale
        log_likelihood += math.log(total)
    # The band of the last frame holds only the two final states, so the normalised
    # end probability is exactly 1 and log P is complete.

    # Backward, one frame at a time, with the gradient of that frame. beta is scaled
    # by the forward factors, beta[t] = beta_t / (c_{t+1} ... c_{T-1}) (Rabiner's
    # choice), so that alpha[t, s] * beta[t, s] = alpha_t beta_t / P is the posterior
    # itself: its sum over s is 1 at every frame. Separate per-frame normalisations
    # of alpha and beta could each be fine while their product underflows (forward
    # and backward mass far apart on long random inputs); this way the product is
    # always representable and the sum gives a check for free.
    beta = np.zeros(S)  # valid in the band of t
    weighted = np.zeros(S + 2)  # beta[t + 1] * emission at t + 1, zero off its band
    posterior = np.empty(S)
    row = np.empty(V)
    for t in range(frames - 1, -1, -1):
        lo, hi = _band(t, frames, S)
        current = alpha[t]
        total = 0.0
        if t == frames - 1:
            for s in range(lo, hi):  # a path ends in the last label or final blank
                beta[s] = 1.0
                posterior[s] = current[s]
                total += current[s]
        else:
            next_lo, next_hi = _band(t + 1, frames, S)
            scale = inverse_scales[t + 1]
            for s in range(next_lo, next_hi):
                weighted[s] = beta[s] * probs[t + 1, states[s]] * scale
            # bands only move down as t falls: clear the two entries above the band
            # of t + 1 that the frame before wrote and s + 1, s + 2 can read
            weighted[next_hi] = 0.0
            weighted[next_hi + 1] = 0.0
            for s in range(lo, hi):  # beta of frame t, and the posterior in one pass
                value = (
                    weighted[s] + weighted[s + 1] + skip_weight[s + 2] * weighted[s + 2]
                )
                beta[s] = value
                product = current[s] * value
                posterior[s] = product
                total += product
        # The posterior sums to 1 up to rounding (~1e-13 even at T = 3000); anything
        # else (NaN from inf * 0, mass lost to underflow) sends the sequence to the
        # log-space path.
        if not abs(total - 1.0) < _MASS_TOLERANCE:
            return _RETRY
        scale = 1.0 / total  # rows of the gradient then sum to zero to the last bit
        for k in range(V):
            row[k] = probs[t, k]
        blank_occupancy = 0.0
        for s in range(lo, hi):
            if s % 2 == 0:  # even states are blanks
                blank_occupancy += posterior[s]
            else:
                row[states[s]] -= posterior[s] * scale
        row[blank] -= blank_occupancy * scale
        for k in range(V):
            grad[t, b, k] = row[k]
    return -log_likelihood


@njit(cache=True)
def _logaddexp(a, b):
    """log(exp(a) + exp(b)) without overflow; -inf is the log of zero."""
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    if a > b:
        return a + math.log1p(math.exp(b - a))
    return b + math.log1p(math.exp(a - b))


@njit(cache=True)
def _log_space_sequence(logits, b, frames, states, skip, grad):
    """The log-space recursion of the reference, for sequences that underflow."""
    V = logits.shape[2]
    S = states.shape[0]
    log_probs = np.empty((frames, V))
    for t in range(frames):
        peak = np.float64(logits[t, b, 0])
        for k in range(1, V):
            peak = max(peak, np.float64(logits[t, b, k]))
        total = 0.0
        for k in range(V):
            total += math.exp(np.float64(logits[t, b, k]) - peak)
        shift = peak + math.log(total)
        for k in range(V):
            log_probs[t, k] = np.float64(logits[t, b, k]) - shift

    log_alpha = np.full((frames, S), -math.inf)
    log_alpha[0, 0] = log_probs[0, states[0]]
    if S > 1:
        log_alpha[0, 1] = log_probs[0, states[1]]
    for t in range(1, frames):
        for s in range(S):
            value = log_alpha[t - 1, s]
            if s >= 1:
                value = _logaddexp(value, log_alpha[t - 1, s - 1])
            if skip[s]:
                value = _logaddexp(value, log_alpha[t - 1, s - 2])
            log_alpha[t, s] = value + log_probs[t, states[s]]
    log_likelihood = log_alpha[frames - 1, S - 1]
    if S > 1:
        log_likelihood = _logaddexp(log_likelihood, log_alpha[frames - 1, S - 2])
    if log_likelihood == -math.inf:  # e.g. a label whose logit is -inf throughout
        _zero_frames(grad, b, frames)
        return math.inf

    log_beta = np.full(S, -math.inf)
    log_weighted = np.empty(S)
    row = np.empty(V)
    for t in range(frames - 1, -1, -1):
        if t == frames - 1:
            log_beta[S - 1] = 0.0
            if S > 1:
                log_beta[S - 2] = 0.0
        else:
            for s in range(S):
                log_weighted[s] = log_beta[s] + log_probs[t + 1, states[s]]
            for s in range(S):
                value = log_weighted[s]
                if s + 1 < S:
                    value = _logaddexp(value, log_weighted[s + 1])
                if s + 2 < S and skip[s + 2]:
                    value = _logaddexp(value, log_weighted[s + 2])
                log_beta[s] = value
        for k in range(V):
            row[k] = math.exp(log_probs[t, k])
        for s in range(S):
            row[states[s]] -= math.exp(log_alpha[t, s] + log_beta[s] - log_likelihood)
        for k in range(V):
            grad[t, b, k] = row[k]
    return -log_likelihood
