"""Optimizers, gradient clipping and learning-rate schedules as pure functions.

Parameters and gradients are dicts of arrays with the same keys. An optimizer state is
a flat dict: ``"step"`` (int, updates done so far) plus one array per parameter and
moment, keyed ``"<moment>.<name>"`` (for instance ``"exp_avg.W"``), so that
``np.savez(path, **state)`` checkpoints it and ``dict(np.load(path))`` resumes it
exactly. Nothing is updated in place: each step returns new parameters and a new
state.

The update equations are those of ``torch.optim.SGD``, ``Adam`` and ``AdamW``, and
:func:`clip_grad_norm` is ``torch.nn.utils.clip_grad_norm_``, so runs can be compared.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from .backends import get_backend
from .errors import ConfigError

Arrays = Mapping[str, np.ndarray]

# torch.nn.utils.clip_grad_norm_ adds this to the norm before dividing
CLIP_NORM_EPS = 1e-6


def _check_grads(params: Arrays, grads: Arrays) -> None:
    if set(params) != set(grads):
        missing = sorted(set(params) - set(grads))
        extra = sorted(set(grads) - set(params))
        raise ConfigError(f"grads: missing {missing}, unexpected {extra}")
    for name, param in params.items():
        grad = grads[name]
        if np.shape(grad) != np.shape(param):
            raise ConfigError(
                f"grads[{name!r}]: shape {np.shape(grad)} != parameter "
                f"{np.shape(param)}"
            )


def _moment(state: Mapping, moment: str, name: str) -> np.ndarray:
    key = f"{moment}.{name}"
    if key not in state:
        raise ConfigError(
            f"optimizer state has no {key!r}; was it made for these params?"
        )
    return state[key]


def _positive(value: float, name: str, allow_zero: bool = True) -> float:
    value = float(value)
    if not (value >= 0.0 if allow_zero else value > 0.0) or not math.isfinite(value):
        raise ConfigError(
            f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}"
        )
    return value


# --- Adam / AdamW --------------------------------------------------------------------


def adam_init(params: Arrays) -> dict:
    """A fresh Adam/AdamW state: zero first and second moments, step 0.

    Returns
    -------
    dict with ``"step"`` (0) and ``"exp_avg.<name>"``, ``"exp_avg_sq.<name>"`` arrays
    shaped and typed like each parameter.
    """
    state: dict = {"step": 0}
    for name, param in params.items():
        state[f"exp_avg.{name}"] = np.zeros_like(param)
        state[f"exp_avg_sq.{name}"] = np.zeros_like(param)
    return state


def adam_step(
    params: Arrays,
    grads: Arrays,
    state: Mapping,
    lr: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    decoupled: bool = False,
    *,
    backend=None,
) -> tuple[dict[str, np.ndarray], dict]:
    """One Adam update (Kingma & Ba), or AdamW (Loshchilov & Hutter) when ``decoupled``.

    Per parameter, with ``t`` the new step count::

        g = grad + weight_decay * p              (Adam: L2 penalty in the gradient)
        p = p * (1 - lr * weight_decay)          (AdamW: decay applied to the weights)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g**2
        p = p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    Parameters
    ----------
    params, grads : dict of arrays with the same keys, shapes and dtypes
    state : dict from :func:`adam_init` or a previous step
    lr : float
    betas : (float, float)
    eps : float
    weight_decay : float
    decoupled : bool

    Returns
    -------
    params, state : new dicts; the inputs are left as they were.
    """
    lr = _positive(lr, "adam lr")
    beta1, beta2 = (float(beta) for beta in betas)
    if not (0.0 <= beta1 < 1.0 and 0.0 <= beta2 < 1.0):
        raise ConfigError(f"adam betas must lie in [0, 1), got {betas}")
    eps = _positive(eps, "adam eps")
    weight_decay = _positive(weight_decay, "adam weight_decay")
    _check_grads(params, grads)
    kernels = get_backend(backend)
    step = int(state["step"]) + 1
    new_params: dict[str, np.ndarray] = {}
    new_state: dict = {"step": step}
    for name, param in params.items():
        param = np.ascontiguousarray(param)
        dtype = param.dtype
        grad = np.ascontiguousarray(grads[name], dtype=dtype)
        exp_avg = np.ascontiguousarray(_moment(state, "exp_avg", name), dtype=dtype)
        exp_avg_sq = np.ascontiguousarray(
            _moment(state, "exp_avg_sq", name), dtype=dtype
        )
        p, m, v = kernels.adam_update(
            param,
            grad,
            exp_avg,
            exp_avg_sq,
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
            bool(decoupled),
            step,
        )
        new_params[name] = p
        new_state[f"exp_avg.{name}"] = m
        new_state[f"exp_avg_sq.{name}"] = v
    return new_params, new_state


# --- SGD -----------------------------------------------------------------------------


def sgd_init(params: Arrays) -> dict:
    """A fresh SGD state: step 0 and a zero momentum buffer per parameter.

    Returns
    -------
    dict with ``"step"`` (0) and ``"momentum_buffer.<name>"`` arrays shaped like each
    parameter.
    """
    state: dict = {"step": 0}
    for name, param in params.items():
        state[f"momentum_buffer.{name}"] = np.zeros_like(param)
    return state


def sgd_step(
    params: Arrays,
    grads: Arrays,
    state: Mapping,
    lr: float,
    momentum: float = 0.0,
    nesterov: bool = False,
    dampening: float = 0.0,
    weight_decay: float = 0.0,
    *,
    backend=None,
) -> tuple[dict[str, np.ndarray], dict]:
    """One SGD update with optional (Nesterov) momentum, as ``torch.optim.SGD``::

        g = grad + weight_decay * p
        buf = g                                    (first step)
        buf = momentum * buf + (1 - dampening) * g (later steps)
        g = g + momentum * buf if nesterov else buf
        p = p - lr * g

    Parameters
    ----------
    params, grads : dict of arrays with the same keys, shapes and dtypes
    state : dict from :func:`sgd_init` or a previous step
    lr, momentum, dampening, weight_decay : float
    nesterov : bool
        Needs ``momentum > 0`` and ``dampening == 0``, as in PyTorch.

    Returns
    -------
    params, state : new dicts; the inputs are left as they were.
    """
    lr = _positive(lr, "sgd lr")
    momentum = _positive(momentum, "sgd momentum")
    dampening = _positive(dampening, "sgd dampening")
    weight_decay = _positive(weight_decay, "sgd weight_decay")
    if nesterov and (momentum == 0.0 or dampening != 0.0):
        raise ConfigError("sgd: nesterov needs momentum > 0 and dampening == 0")
    _check_grads(params, grads)
    kernels = get_backend(backend)
    step = int(state["step"])
    new_params: dict[str, np.ndarray] = {}
    new_state: dict = {"step": step + 1}
    for name, param in params.items():
        param = np.ascontiguousarray(param)
        grad = np.ascontiguousarray(grads[name], dtype=param.dtype)
        buf = np.ascontiguousarray(
            _moment(state, "momentum_buffer", name), dtype=param.dtype
        )
        p, new_buf = kernels.sgd_update(
            param,
            grad,
            buf,
            lr,
            momentum,
            dampening,
            weight_decay,
            bool(nesterov),
            step == 0,
        )
        new_params[name] = p
        new_state[f"momentum_buffer.{name}"] = new_buf
    return new_params, new_state


# --- gradient clipping ---------------------------------------------------------------


def global_norm(grads: Arrays) -> float:
    """The L2 norm of all gradients together, ``sqrt(sum of squares)``, in float64."""
    squares = 0.0
    for grad in grads.values():
        flat = np.asarray(grad, dtype=np.float64).reshape(-1)
        squares += float(flat @ flat)
    return math.sqrt(squares)


def clip_grad_norm(
    grads: Arrays, max_norm: float
) -> tuple[dict[str, np.ndarray], float]:
    """Scale all gradients together so that their global L2 norm is <= ``max_norm``.

    As ``torch.nn.utils.clip_grad_norm_``: the factor is
    ``min(1, max_norm / (total_norm + 1e-6))``.

    Parameters
    ----------
    grads : dict of arrays
    max_norm : float, > 0

    Returns
    -------
    grads : dict of new arrays (same dtypes), scaled
    total_norm : float
        The norm before clipping (``inf`` or ``nan`` when a gradient is not finite).
    """
    max_norm = _positive(max_norm, "clip_grad_norm max_norm", allow_zero=False)
    total = global_norm(grads)
    factor = min(1.0, max_norm / (total + CLIP_NORM_EPS))
    clipped = {
        name: (np.asarray(grad) * np.asarray(grad).dtype.type(factor))
        for name, grad in grads.items()
    }
    return clipped, total


# --- learning-rate schedules ---------------------------------------------------------


def step_lr(base_lr: float, epoch: int, step_size: int, gamma: float = 0.1) -> float:
    """``base_lr * gamma ** (epoch // step_size)``, as ``lr_scheduler.StepLR``."""
    if int(step_size) <= 0:
        raise ConfigError(f"step_lr: step_size must be > 0, got {step_size}")
    return float(base_lr) * float(gamma) ** (int(epoch) // int(step_size))


def exponential_lr(base_lr: float, epoch: int, gamma: float) -> float:
    """``base_lr * gamma ** epoch`` (``torch.optim.lr_scheduler.ExponentialLR``)."""
    return float(base_lr) * float(gamma) ** int(epoch)


def warmup_lr(
    base_lr: float, step: int, warmup_steps: int, start_factor: float = 0.1
) -> float:
    """Linear warm-up from ``start_factor * base_lr`` up to ``base_lr``.

    ``base_lr * (start_factor + (1 - start_factor) * min(step, warmup_steps) /
    warmup_steps)``, as ``torch.optim.lr_scheduler.LinearLR(start_factor, 1.0,
    warmup_steps)``; ``base_lr`` from then on. Compose with a decay by passing its
    result as ``base_lr``.
    """
    if int(warmup_steps) <= 0:
        return float(base_lr)
    if not 0.0 <= float(start_factor) <= 1.0:
        raise ConfigError(
            f"warmup_lr: start_factor must lie in [0, 1], got {start_factor}"
        )
    progress = min(int(step), int(warmup_steps)) / int(warmup_steps)
    return float(base_lr) * (
        float(start_factor) + (1.0 - float(start_factor)) * progress
    )


class ReduceOnPlateau:
    """Lower the learning rate when a metric stops improving.

    The rule of ``torch.optim.lr_scheduler.ReduceLROnPlateau``: after more than
    ``patience`` epochs without an improvement beyond ``threshold``, multiply the rate
    by ``factor`` (not below ``min_lr``), then wait ``cooldown`` epochs before counting
    again.

    The whole state, settings included, is the plain dict :attr:`state` (floats, ints
    and strings), so that
    ``ReduceOnPlateau.from_state(json.loads(json.dumps(s.state)))`` resumes exactly.

    Parameters
    ----------
    lr : float
        The starting learning rate.
    mode : {"min", "max"}
        Whether a lower or a higher metric is better.
    factor : float
        In (0, 1).
    patience, cooldown : int
    threshold : float
    threshold_mode : {"rel", "abs"}
    min_lr, eps : float
        A reduction smaller than ``eps`` is skipped.
    """

    def __init__(
        self,
        lr: float,
        mode: str = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lr: float = 0.0,
        eps: float = 1e-8,
    ):
        if mode not in ("min", "max"):
            raise ConfigError(
                f"ReduceOnPlateau: mode must be 'min' or 'max', got {mode!r}"
            )
        if threshold_mode not in ("rel", "abs"):
            raise ConfigError(
                "ReduceOnPlateau: threshold_mode must be 'rel' or 'abs', got "
                f"{threshold_mode!r}"
            )
        if not 0.0 < float(factor) < 1.0:
            raise ConfigError(
                f"ReduceOnPlateau: factor must lie in (0, 1), got {factor}"
            )
        self.state: dict = {
            "lr": float(lr),
            "mode": mode,
            "factor": float(factor),
            "patience": int(patience),
            "threshold": float(threshold),
            "threshold_mode": threshold_mode,
            "cooldown": int(cooldown),
            "min_lr": float(min_lr),
            "eps": float(eps),
            "best": math.inf if mode == "min" else -math.inf,
            "num_bad_epochs": 0,
            "cooldown_counter": 0,
            "last_epoch": 0,
        }

    @classmethod
    def from_state(cls, state: Mapping) -> ReduceOnPlateau:
        """A scheduler resumed from a :attr:`state` dict (copied, not shared)."""
        scheduler = cls(
            state["lr"],
            mode=state["mode"],
            factor=state["factor"],
            patience=state["patience"],
            threshold=state["threshold"],
            threshold_mode=state["threshold_mode"],
            cooldown=state["cooldown"],
            min_lr=state["min_lr"],
            eps=state["eps"],
        )
        for key in ("best", "num_bad_epochs", "cooldown_counter", "last_epoch"):
            scheduler.state[key] = type(scheduler.state[key])(state[key])
        return scheduler

    @property
    def lr(self) -> float:
        """The current learning rate."""
        return self.state["lr"]

    def _is_better(self, value: float) -> bool:
        s = self.state
        best, threshold = s["best"], s["threshold"]
        if s["mode"] == "min":
            bar = (
                best * (1.0 - threshold)
                if s["threshold_mode"] == "rel"
                else best - threshold
            )
            return value < bar
        bar = (
            best * (1.0 + threshold)
            if s["threshold_mode"] == "rel"
            else best + threshold
        )
        return value > bar

    def step(self, metric: float) -> float:
        """Record one epoch's metric and return the learning rate for the next epoch."""
        s = self.state
        value = float(metric)
        s["last_epoch"] += 1
        if self._is_better(value):
            s["best"] = value
            s["num_bad_epochs"] = 0
        else:
            s["num_bad_epochs"] += 1
        if s["cooldown_counter"] > 0:
            s["cooldown_counter"] -= 1
            s["num_bad_epochs"] = 0  # bad epochs during the cooldown do not count
        if s["num_bad_epochs"] > s["patience"]:
            reduced = max(s["lr"] * s["factor"], s["min_lr"])
            if s["lr"] - reduced > s["eps"]:
                s["lr"] = reduced
            s["cooldown_counter"] = s["cooldown"]
            s["num_bad_epochs"] = 0
        return s["lr"]
