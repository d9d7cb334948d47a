"""Connectionist temporal classification (CTC) loss and its gradient w.r.t. the logits.

CTC (Graves et al., 2006) scores a transcript against per-frame class scores without
an alignment: the likelihood sums over every frame-level path that collapses (merge
repeats, drop blanks) to the transcript. :func:`ctc_loss` returns the negative log of
that sum and, from the same forward-backward pass, its gradient with respect to the
*logits*, softmax folded in: ``softmax(logits) - posterior occupancy``.

Shape legend: T frames, B batch, V classes (blank included), L labels.
"""

from __future__ import annotations

import warnings
from types import ModuleType
from typing import Any

import numpy as np

from .backends import get_backend
from .constants import CTC_REDUCTION, CTC_REDUCTIONS, CTC_ZERO_INFINITY
from .errors import ConfigError
from .nn._checks import xp_of

__all__ = ["ctc_loss", "flatten_targets"]


def ctc_loss(
    logits: np.ndarray,
    targets: np.ndarray,
    input_lengths: np.ndarray,
    target_lengths: np.ndarray,
    *,
    blank: int | None = None,
    reduction: str = CTC_REDUCTION,
    zero_infinity: bool = CTC_ZERO_INFINITY,
    backend: str | ModuleType | None = None,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray | np.floating, np.ndarray]:
    """CTC negative log-likelihood and its gradient with respect to the logits.

    The first argument is what the model produces, unnormalised logits; log-softmax is
    applied over V inside. Log-probabilities may be passed instead and give the same
    loss: log-softmax leaves log-probabilities unchanged. The returned gradient is
    always ``d loss / d (first argument)`` through that log-softmax, i.e.
    ``softmax - occupancy`` scaled for the reduction, which is also what
    ``torch.nn.functional.ctc_loss(log_softmax(x), ...)`` back-propagates to ``x``.

    Parameters
    ----------
    logits : array, shape (T, B, V), float32 or float64
        Per-frame class scores, time-major. Frames ``t >= input_lengths[b]`` are
        padding: their values are never read and their gradient is zero. CuPy logits
        stay on the device (the targets and lengths are checked on the host and
        uploaded with the call); the losses and the gradient are then CuPy arrays.
    targets : int array, shape (sum L,) or (B, L_max)
        Labels, either flat (the sequences one after the other, the project's
        convention) or padded (row ``b`` holds ``target_lengths[b]`` labels; entries
        after them are ignored). Labels lie in ``[0, V)`` and are never the blank.
    input_lengths : int array, shape (B,)
        Valid frames of each sequence, in ``[0, T]``.
    target_lengths : int array, shape (B,)
        Labels of each sequence, ``>= 0``.
    blank : int, optional
        Class id of the blank; default ``V - 1`` (DeepSpeech puts it last).
    reduction : {"mean", "sum", "none", "mean_per_target"}
        ``"none"``: the per-sequence losses (B,). ``"sum"``: their sum. ``"mean"``:
        their average over the batch, as DeepSpeech trains (``tf.reduce_mean`` of the
        per-sequence losses). ``"mean_per_target"``: each loss divided by its target
        length (at least 1), then averaged over the batch: PyTorch's ``"mean"``.
    zero_infinity : bool
        Sequences with no possible alignment (more labels, plus one blank between each
        pair of equal neighbours, than frames) get loss 0 instead of ``inf``. Either
        way a ``RuntimeWarning`` names them and their gradient is zero, so one bad
        utterance never fills a training step with inf or NaN.
    backend : str or module, optional
        ``"numpy"``, ``"numba"`` (default, see ``$NPSPEECH_BACKEND``) or ``"cupy"``.
    out : array, shape (T, B, V), dtype of ``logits``, optional
        C-contiguous buffer that receives the gradient (no (T, B, V) allocation).

    Returns
    -------
    loss : array (B,) for ``"none"``, else a scalar; dtype of ``logits``
        Natural-log negative log-likelihood, reduced.
    grad : array, shape (T, B, V), dtype of ``logits``
        Gradient of ``loss`` w.r.t. ``logits`` (for ``"none"``, of the sum of the
        per-sequence losses: ``grad[:, b]`` is the gradient of ``loss[b]``). Each
        valid frame's row sums to zero over V (times the reduction's scale).

    Raises
    ------
    ConfigError
        For arrays of the wrong shape, dtype or contents (names the argument, and the
        sequence or frame at fault), an unknown reduction or backend.
    """
    if reduction not in CTC_REDUCTIONS:
        raise ConfigError(
            f"reduction must be one of {', '.join(CTC_REDUCTIONS)}, got {reduction!r}"
        )
    logits = _check_logits(logits)
    T, B, V = logits.shape
    blank = V - 1 if blank is None else _check_blank(blank, V)
    input_lengths = _check_lengths(input_lengths, B, "input_lengths", upper=T)
    target_lengths = _check_lengths(target_lengths, B, "target_lengths")
    flat = flatten_targets(targets, target_lengths)
    _check_labels(flat, target_lengths, V, blank)
    xp = xp_of(logits)
    if xp is np:
        _check_finite(logits, input_lengths)
    else:
        _check_finite_device(logits, input_lengths)
    offsets = np.zeros(B, dtype=np.int64)
    np.cumsum(target_lengths[:-1], out=offsets[1:])
    if out is not None:
        _check_out(out, logits)

    kernels = get_backend(backend)
    losses, grad = kernels.ctc_loss_and_grad(
        logits, flat, offsets, input_lengths, target_lengths, blank, out=out
    )

    if xp is np:
        impossible = np.flatnonzero(~np.isfinite(losses))
    elif bool(xp.isfinite(losses).all()):  # one scalar back in the usual case
        impossible = np.zeros(0, dtype=np.int64)
    else:
        impossible = np.flatnonzero(~np.isfinite(losses.get()))
    if impossible.size:
        action = "set to 0 (zero_infinity)" if zero_infinity else "inf"
        warnings.warn(
            f"CTC: no alignment fits the input for sequence(s) {impossible.tolist()}; "
            f"their loss is {action} and their gradient zero",
            RuntimeWarning,
            stacklevel=2,
        )
        if zero_infinity:
            losses[impossible] = 0.0

    scale = _reduction_scale(reduction, target_lengths, B)
    if scale is not None:
        scale = xp.asarray(scale)
        grad *= scale.astype(grad.dtype)[None, :, None]
    if reduction == "none":
        return losses, grad
    if reduction == "sum":
        total = losses.sum(dtype=np.float64)
    else:
        total = (losses.astype(np.float64) * scale).sum()
    return losses.dtype.type(float(total) if xp is not np else total), grad


def flatten_targets(targets: np.ndarray, target_lengths: np.ndarray) -> np.ndarray:
    """Flat int32 labels (sum L,) from flat (sum L,) or padded (B, L_max) targets.

    Raises
    ------
    ConfigError
        When ``targets`` is not integer, not 1-D or 2-D, or too short for the lengths.
    """
    targets = np.asarray(targets)
    if targets.size and not np.issubdtype(targets.dtype, np.integer):
        raise ConfigError(f"targets must be integer labels, got dtype {targets.dtype}")
    lengths = np.asarray(target_lengths)
    total = int(lengths.sum())
    if targets.ndim == 1:
        if targets.shape[0] != total:
            raise ConfigError(
                f"flat targets hold {targets.shape[0]} labels but target_lengths sum "
                f"to {total}"
            )
        return np.ascontiguousarray(targets, dtype=np.int32)
    if targets.ndim == 2:
        if targets.shape[0] != lengths.shape[0]:
            raise ConfigError(
                f"padded targets have {targets.shape[0]} rows for a batch of "
                f"{lengths.shape[0]}"
            )
        longest = int(lengths.max()) if lengths.size else 0
        if longest > targets.shape[1]:
            b = int(np.argmax(lengths))
            raise ConfigError(
                f"target_lengths[{b}] = {longest} exceeds the padded targets' width "
                f"{targets.shape[1]}"
            )
        keep = np.arange(targets.shape[1])[None, :] < lengths[:, None]  # (B, L_max)
        return np.ascontiguousarray(targets[keep], dtype=np.int32)
    raise ConfigError(
        f"targets must be flat (sum L,) or padded (B, L_max), got shape {targets.shape}"
    )


def _check_logits(logits: np.ndarray) -> np.ndarray:
    xp = xp_of(logits)  # device logits stay on the device; the rest is host data
    logits = xp.asarray(logits)
    if logits.ndim != 3 or logits.shape[2] == 0:
        raise ConfigError(f"logits must have shape (T, B, V), got {logits.shape}")
    if logits.dtype not in (np.float32, np.float64):
        raise ConfigError(f"logits must be float32 or float64, got {logits.dtype}")
    return xp.ascontiguousarray(logits)


def _check_blank(blank: int, V: int) -> int:
    if not 0 <= int(blank) < V:
        raise ConfigError(f"blank {blank} is outside the {V} classes")
    return int(blank)


def _check_lengths(
    lengths: np.ndarray, B: int, name: str, upper: int | None = None
) -> np.ndarray:
    lengths = np.asarray(lengths)
    if lengths.shape != (B,):
        raise ConfigError(f"{name} must have shape ({B},), got {lengths.shape}")
    if B and not np.issubdtype(lengths.dtype, np.integer):
        raise ConfigError(f"{name} must be integers, got dtype {lengths.dtype}")
    if upper is not None:
        bad = np.flatnonzero((lengths < 0) | (lengths > upper))
    else:
        bad = np.flatnonzero(lengths < 0)
    if bad.size:
        b = int(bad[0])
        limit = f"[0, {upper}]" if upper is not None else ">= 0"
        raise ConfigError(f"{name}[{b}] = {int(lengths[b])} is not in {limit}")
    return np.ascontiguousarray(lengths, dtype=np.int32)


def _check_labels(
    flat: np.ndarray, target_lengths: np.ndarray, V: int, blank: int
) -> None:
    bad = np.flatnonzero((flat < 0) | (flat >= V) | (flat == blank))
    if bad.size:
        position = int(bad[0])
        b = int(np.searchsorted(np.cumsum(target_lengths), position, side="right"))
        raise ConfigError(
            f"target label {int(flat[position])} of sequence {b} is not a class in "
            f"[0, {V}) other than the blank {blank}"
        )


def _check_finite(logits: np.ndarray, input_lengths: np.ndarray) -> None:
    """Valid frames must have no NaN, no +inf and at least one finite score.

    ``-inf`` scores are allowed (log-probabilities of impossible classes). Padded
    frames are not read, so they may hold anything.
    """
    for b, frames in enumerate(input_lengths.tolist()):
        if frames == 0:
            continue
        valid = logits[:frames, b]  # (T_b, V)
        # max propagates NaN: the peak is NaN, +inf or -inf on an unusable frame
        peak = valid.max(axis=1)  # (T_b,)
        if not np.isfinite(peak).all():
            t = int(np.flatnonzero(~np.isfinite(peak))[0])
            raise ConfigError(
                f"logits[{t}, {b}] holds NaN or +inf, or no finite score at all"
            )


def _check_finite_device(logits: Any, input_lengths: np.ndarray) -> None:
    """:func:`_check_finite` for device logits: one boolean comes back, and only a
    failing batch is read back to name the frame at fault."""
    xp = xp_of(logits)
    T = logits.shape[0]
    valid = xp.arange(T)[:, None] < xp.asarray(input_lengths)[None, :]  # (T, B)
    peak = logits.max(axis=2)  # (T, B)
    if not bool(xp.isfinite(xp.where(valid, peak, 0)).all()):
        _check_finite(logits.get(), input_lengths)


def _check_out(out: np.ndarray, logits: np.ndarray) -> None:
    if (
        not isinstance(out, xp_of(logits).ndarray)
        or out.shape != logits.shape
        or out.dtype != logits.dtype
        or not out.flags.c_contiguous
    ):
        raise ConfigError(
            f"out must be a C-contiguous {logits.dtype} array of shape {logits.shape}"
        )


def _reduction_scale(
    reduction: str, target_lengths: np.ndarray, B: int
) -> np.ndarray | None:
    """Per-sequence factor (B,) float64 that a reduction applies, None for none/sum."""
    if reduction in ("none", "sum"):
        return None
    if reduction == "mean":
        return np.full(B, 1.0 / max(B, 1))
    return 1.0 / (np.maximum(target_lengths, 1).astype(np.float64) * max(B, 1))
