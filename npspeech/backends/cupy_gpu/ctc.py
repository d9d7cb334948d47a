"""CTC loss and gradient on the device: log-space alpha/beta, one block per sequence.

The same name, signature and results as
:func:`npspeech.backends.numpy_ref.ctc.ctc_loss_and_grad` (read its module for the
recursions). As warp-ctc does it, each CUDA block runs one sequence: its threads own
the states ``s`` of the extended label sequence (``blank, l1, blank, ..., blank``,
S = 2 L + 1, strided over the block when S exceeds it) and step through time with a
barrier per frame, forward for alpha and backward for beta. The recursions run in
float64 whatever the input dtype, as the reference does, since log-space sums over long
inputs lose digits in float32. A second kernel scatters each state's posterior onto
its class (one block per frame and sequence, atomic adds: every blank state and
repeated labels share a class); the gradient ``softmax - occupancy`` is then one
element-wise expression.

Shape legend: T frames, B batch, V classes, L labels, S states.
"""

from __future__ import annotations

import numpy as np

from ._compile import raw
from ._runtime import cupy, follow_input

__all__ = ["ctc_loss_and_grad"]

#: threads per block of the alpha/beta kernel (states beyond it are strided)
CTC_THREADS = 256

_COMMON = r"""
// NVRTC includes no standard header, so infinity is spelled from its bits.
#define NEG_INF (-__longlong_as_double(0x7ff0000000000000LL))
__device__ __forceinline__ double log_add(double a, double b) {
    // log(exp(a) + exp(b)) with -inf as the zero of the semiring
    if (a == NEG_INF) return b;
    if (b == NEG_INF) return a;
    double m = a > b ? a : b;
    return m + log1p(exp(-fabs(a - b)));
}
__device__ __forceinline__ int state_label(const int* labels, int s, int blank) {
    return (s & 1) ? labels[s >> 1] : blank;
}
"""

_ALPHA_BETA = (
    _COMMON
    + r"""
extern "C" __global__ void npspeech_ctc_alpha_beta(
    const double* log_probs,       // (T, B, V)
    const int* targets,            // (sum L,)
    const long long* offsets,      // (B,)
    const int* input_lengths,      // (B,)
    const int* target_lengths,     // (B,)
    int T, int B, int V, int S_max, int blank,
    double* alpha,                 // (B, T, S_max)
    double* beta,                  // (B, T, S_max)
    double* log_likelihood)        // (B,)
{
    int b = blockIdx.x;
    int frames = input_lengths[b];
    int L = target_lengths[b];
    int S = 2 * L + 1;
    const int* labels = targets + offsets[b];
    double* a = alpha + (long long)b * T * S_max;
    double* be = beta + (long long)b * T * S_max;
    if (frames == 0) {  // only the empty target can be emitted by no frame
        if (threadIdx.x == 0) log_likelihood[b] = (L == 0) ? 0.0 : NEG_INF;
        return;
    }
    // alpha: paths start with the blank or the first label
    for (int s = threadIdx.x; s < S; s += blockDim.x) {
        double e = log_probs[(long long)b * V + state_label(labels, s, blank)];
        a[s] = (s < 2) ? e : NEG_INF;
    }
    __syncthreads();
    for (int t = 1; t < frames; ++t) {
        const double* prev = a + (long long)(t - 1) * S_max;
        double* cur = a + (long long)t * S_max;
        const double* lp = log_probs + ((long long)t * B + b) * V;
        for (int s = threadIdx.x; s < S; s += blockDim.x) {
            int k = state_label(labels, s, blank);
            double v = prev[s];
            if (s >= 1) v = log_add(v, prev[s - 1]);
            // the skip: into a label that differs from the label two states back
            if (s >= 2 && (s & 1) && k != state_label(labels, s - 2, blank))
                v = log_add(v, prev[s - 2]);
            cur[s] = v + lp[k];
        }
        __syncthreads();
    }
    // beta: a path ends with the last label or the final blank
    double* last = be + (long long)(frames - 1) * S_max;
    for (int s = threadIdx.x; s < S; s += blockDim.x)
        last[s] = (s >= S - 2) ? 0.0 : NEG_INF;
    __syncthreads();
    for (int t = frames - 2; t >= 0; --t) {
        const double* next = be + (long long)(t + 1) * S_max;
        double* cur = be + (long long)t * S_max;
        const double* lp = log_probs + ((long long)(t + 1) * B + b) * V;
        for (int s = threadIdx.x; s < S; s += blockDim.x) {
            double v = next[s] + lp[state_label(labels, s, blank)];
            if (s + 1 < S)
                v = log_add(v, next[s + 1] + lp[state_label(labels, s + 1, blank)]);
            if (s + 2 < S && ((s + 2) & 1)) {
                int k2 = state_label(labels, s + 2, blank);
                if (k2 != state_label(labels, s, blank))
                    v = log_add(v, next[s + 2] + lp[k2]);
            }
            cur[s] = v;
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        const double* end = a + (long long)(frames - 1) * S_max;
        log_likelihood[b] = (S >= 2) ? log_add(end[S - 1], end[S - 2]) : end[S - 1];
    }
}
"""
)

_OCCUPANCY = (
    _COMMON
    + r"""
extern "C" __global__ void npspeech_ctc_occupancy(
    const double* alpha, const double* beta,   // (B, T, S_max)
    const double* log_likelihood,               // (B,)
    const int* targets, const long long* offsets,
    const int* input_lengths, const int* target_lengths,
    int T, int B, int V, int S_max, int blank,
    double* occupancy)                          // (T, B, V), zeroed
{
    int t = blockIdx.x;
    int b = blockIdx.y;
    double ll = log_likelihood[b];
    if (t >= input_lengths[b] || ll == NEG_INF) return;
    int S = 2 * target_lengths[b] + 1;
    const int* labels = targets + offsets[b];
    long long row = ((long long)b * T + t) * S_max;
    double* out = occupancy + ((long long)t * B + b) * V;
    for (int s = threadIdx.x; s < S; s += blockDim.x) {
        double p = exp(alpha[row + s] + beta[row + s] - ll);
        atomicAdd(out + state_label(labels, s, blank), p);
    }
}
"""
)


def _label(labels, s, blank):
    return int(labels[s >> 1]) if s & 1 else blank


def _log_add(a, b):
    return np.logaddexp(a, b)


def _alpha_beta_twin(grid, block, args):
    """The alpha/beta kernel, block by block, each thread's state loop in turn."""
    (lp, targets, offsets, in_lens, tgt_lens, T, B, V, S_max, blank, alpha, beta,
     ll) = args  # fmt: skip
    lp = lp.reshape(T, B, V)
    alpha = alpha.reshape(B, T, S_max)
    beta = beta.reshape(B, T, S_max)
    with np.errstate(invalid="ignore"):
        for b in range(grid[0]):
            frames, L = int(in_lens[b]), int(tgt_lens[b])
            S = 2 * L + 1
            labels = targets[int(offsets[b]) :]
            if frames == 0:
                ll[b] = 0.0 if L == 0 else -np.inf
                continue
            a, be = alpha[b], beta[b]
            for s in range(S):
                a[0, s] = lp[0, b, _label(labels, s, blank)] if s < 2 else -np.inf
            for t in range(1, frames):
                for s in range(S):
                    k = _label(labels, s, blank)
                    v = a[t - 1, s]
                    if s >= 1:
                        v = _log_add(v, a[t - 1, s - 1])
                    if s >= 2 and s & 1 and k != _label(labels, s - 2, blank):
                        v = _log_add(v, a[t - 1, s - 2])
                    a[t, s] = v + lp[t, b, k]
            for s in range(S):
                be[frames - 1, s] = 0.0 if s >= S - 2 else -np.inf
            for t in range(frames - 2, -1, -1):
                for s in range(S):
                    v = be[t + 1, s] + lp[t + 1, b, _label(labels, s, blank)]
                    if s + 1 < S:
                        k1 = _label(labels, s + 1, blank)
                        v = _log_add(v, be[t + 1, s + 1] + lp[t + 1, b, k1])
                    if s + 2 < S and (s + 2) & 1:
                        k2 = _label(labels, s + 2, blank)
                        if k2 != _label(labels, s, blank):
                            v = _log_add(v, be[t + 1, s + 2] + lp[t + 1, b, k2])
                    be[t, s] = v
            end = a[frames - 1]
            ll[b] = _log_add(end[S - 1], end[S - 2]) if S >= 2 else end[S - 1]


def _occupancy_twin(grid, block, args):
    (alpha, beta, ll, targets, offsets, in_lens, tgt_lens, T, B, V, S_max, blank,
     occupancy) = args  # fmt: skip
    alpha = alpha.reshape(B, T, S_max)
    beta = beta.reshape(B, T, S_max)
    occupancy = occupancy.reshape(T, B, V)
    for t in range(grid[0]):
        for b in range(grid[1]):
            if t >= in_lens[b] or ll[b] == -np.inf:
                continue
            S = 2 * int(tgt_lens[b]) + 1
            labels = targets[int(offsets[b]) :]
            for s in range(S):
                p = np.exp(alpha[b, t, s] + beta[b, t, s] - ll[b])
                occupancy[t, b, _label(labels, s, blank)] += p


_alpha_beta = raw(_ALPHA_BETA, "npspeech_ctc_alpha_beta", _alpha_beta_twin)
_occupancy = raw(_OCCUPANCY, "npspeech_ctc_occupancy", _occupancy_twin)


@follow_input(out="out", result=1)
def ctc_loss_and_grad(
    logits, targets, target_offsets, input_lengths, target_lengths, blank, out=None
):
    """Per-sequence CTC negative log-likelihood and its gradient w.r.t. the logits.

    Parameters and results as the NumPy reference: logits (T, B, V) float32/float64,
    targets int32 (sum L,), target_offsets int64 (B,), input_lengths and
    target_lengths int32 (B,) -> losses (B,), grad (T, B, V) in the logits' dtype.
    ``inf`` losses, and zero gradients, where no alignment exists.
    """
    xp = cupy()
    T, B, V = logits.shape
    targets = xp.ascontiguousarray(targets, dtype=np.int32)
    offsets = xp.ascontiguousarray(target_offsets, dtype=np.int64)
    in_lens = xp.ascontiguousarray(input_lengths, dtype=np.int32)
    tgt_lens = xp.ascontiguousarray(target_lengths, dtype=np.int32)
    # float64 log-softmax over the classes of every frame (padded frames too: they
    # are never read by the kernels and masked below)
    x = logits.astype(np.float64)
    shifted = x - x.max(axis=2, keepdims=True)
    log_probs = shifted - xp.log(xp.exp(shifted).sum(axis=2, keepdims=True))
    # S_max needs one small synchronisation: the scratch arrays are sized by it.
    L_max = int(tgt_lens.max()) if B else 0
    S_max = 2 * L_max + 1
    alpha = xp.empty((B, T, S_max), dtype=np.float64)
    beta = xp.empty((B, T, S_max), dtype=np.float64)
    log_likelihood = xp.empty(B, dtype=np.float64)
    sizes = (np.int32(T), np.int32(B), np.int32(V), np.int32(S_max), np.int32(blank))
    occupancy = xp.zeros((T, B, V), dtype=np.float64)
    if B and T:
        _alpha_beta(
            (B,), (CTC_THREADS,),
            (log_probs, targets, offsets, in_lens, tgt_lens) + sizes
            + (alpha, beta, log_likelihood),
        )  # fmt: skip
        _occupancy(
            (T, B), (min(CTC_THREADS, max(32, S_max)),),
            (alpha, beta, log_likelihood, targets, offsets, in_lens, tgt_lens)
            + sizes + (occupancy,),
        )  # fmt: skip
    elif B:  # no frames at all: only empty targets are possible
        log_likelihood = xp.where(tgt_lens == 0, 0.0, -np.inf)
    feasible = xp.isfinite(log_likelihood)  # (B,)
    valid = (xp.arange(T)[:, None] < in_lens[None, :]) & feasible[None, :]  # (T, B)
    grad = xp.where(valid[:, :, None], xp.exp(log_probs) - occupancy, 0.0)
    losses = xp.where(feasible, -log_likelihood, np.inf).astype(logits.dtype)
    if out is None:
        return losses, grad.astype(logits.dtype)
    out[...] = grad
    return losses, out
