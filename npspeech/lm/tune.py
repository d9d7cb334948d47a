"""Search the decoder's alpha (LM weight) and beta (word bonus) on a development set.

The acoustic model runs once: the search works on its per-utterance log-probabilities
and calls a caller-supplied ``decode_fn(log_probs, alpha, beta) -> text`` (normally the
prefix beam search with the scorer) for every point of a grid. Points are ranked by
corpus WER, then corpus CER (finer-grained on small dev sets), then grid order. An
optional coarse-to-fine stage halves the grid step around the best point a few times.

Dev sets are passed to ``npspeech lm tune`` as ``.npz`` files (:func:`save_log_probs`):
arrays ``log_probs_0``, ``log_probs_1``, ... of shape (T_i, V) and a string array
``references``; they are read without pickle.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import constants as C
from ..errors import ConfigError, DataError
from ..metrics import corpus_error_counts

DecodeFn = Callable[[np.ndarray, float, float], str]
_KEY_PREFIX = "log_probs_"


@dataclass(frozen=True)
class TunePoint:
    """One evaluated (alpha, beta) and its corpus error rates."""

    alpha: float
    beta: float
    wer: float
    cer: float


@dataclass(frozen=True)
class TuneResult:
    """The best point of a search and every point evaluated.

    Attributes
    ----------
    alpha, beta : float
        The best parameters.
    wer, cer : float
        Their corpus word and character error rates.
    table : tuple of TunePoint
        Every evaluated point, in evaluation order.
    """

    alpha: float
    beta: float
    wer: float
    cer: float
    table: tuple[TunePoint, ...]


def default_grid(
    value_range: tuple[float, float], points: int = C.TUNE_GRID_POINTS
) -> np.ndarray:
    """``points`` evenly spaced values over ``value_range`` (inclusive), float64."""
    low, high = value_range
    if points < 1 or not high >= low:
        raise ConfigError(f"bad grid: range {value_range}, {points} points")
    return np.linspace(low, high, points)


def _check_inputs(
    log_probs_list: Sequence[np.ndarray], references: Sequence[str]
) -> None:
    if len(log_probs_list) != len(references):
        raise DataError(
            f"{len(log_probs_list)} log-probability arrays "
            f"but {len(references)} references"
        )
    if not log_probs_list:
        raise DataError("the dev set is empty")
    width = None
    for index, log_probs in enumerate(log_probs_list):
        if not isinstance(log_probs, np.ndarray) or log_probs.ndim != 2:
            raise DataError(f"log_probs[{index}] must be a 2-D array (T, V)")
        if width is not None and log_probs.shape[1] != width:
            raise DataError(
                f"log_probs[{index}] has {log_probs.shape[1]} classes, "
                f"the first has {width}"
            )
        width = log_probs.shape[1]
        if not np.all(np.isfinite(log_probs) | (log_probs == -np.inf)):
            raise DataError(f"log_probs[{index}] holds NaN or +inf")


def _values(name: str, values) -> list[float]:
    values = [float(v) for v in np.atleast_1d(np.asarray(values, dtype=np.float64))]
    if not values or not all(math.isfinite(v) for v in values):
        raise ConfigError(f"{name} must be a non-empty list of finite numbers")
    return values


def tune_alpha_beta(
    log_probs_list: Sequence[np.ndarray],
    references: Sequence[str],
    decode_fn: DecodeFn,
    alphas: Sequence[float] | None = None,
    betas: Sequence[float] | None = None,
    *,
    refine_steps: int = 0,
    progress: bool = False,
) -> TuneResult:
    """Grid search (then optional refinement) of alpha and beta by corpus WER.

    Parameters
    ----------
    log_probs_list : sequence of ndarray, each shape (T_i, V), float
        The acoustic model's per-frame log-probabilities of each dev utterance.
    references : sequence of str
        The reference transcript of each utterance.
    decode_fn
        ``decode_fn(log_probs, alpha, beta) -> text`` for one utterance.
    alphas, betas
        Grid values; default ``constants.TUNE_ALPHA_RANGE``/``TUNE_BETA_RANGE`` with
        ``constants.TUNE_GRID_POINTS`` points each.
    refine_steps
        Rounds of refinement: each halves the step (starting from the grid's spacing)
        and evaluates the 3 x 3 neighbourhood of the best point so far (alpha >= 0).
    progress
        Show a tqdm bar over the points.

    Returns
    -------
    TuneResult

    Raises
    ------
    DataError
        When inputs disagree in length or shape.
    ConfigError
        For an empty or non-finite grid or a negative ``refine_steps``.
    """
    _check_inputs(log_probs_list, references)
    alphas = _values(
        "alphas", default_grid(C.TUNE_ALPHA_RANGE) if alphas is None else alphas
    )
    betas = _values(
        "betas", default_grid(C.TUNE_BETA_RANGE) if betas is None else betas
    )
    if not isinstance(refine_steps, int) or refine_steps < 0:
        raise ConfigError(f"refine_steps must be an integer >= 0, got {refine_steps!r}")
    evaluated: dict[tuple[float, float], TunePoint] = {}

    def evaluate(points: list[tuple[float, float]]) -> None:
        points = [p for p in dict.fromkeys(points) if p not in evaluated]
        iterator = points
        if progress and points:
            from tqdm import tqdm

            iterator = tqdm(points, desc="alpha/beta", unit="point")
        for alpha, beta in iterator:
            hypotheses = [decode_fn(lp, alpha, beta) for lp in log_probs_list]
            counts = corpus_error_counts(list(references), hypotheses)
            evaluated[(alpha, beta)] = TunePoint(alpha, beta, counts.wer, counts.cer)

    def best() -> TunePoint:
        # Lowest WER, then CER; among equals the earliest evaluated (dicts keep order).
        return min(evaluated.values(), key=lambda p: (p.wer, p.cer))

    evaluate([(a, b) for a in alphas for b in betas])
    step_alpha = _spacing(alphas)
    step_beta = _spacing(betas)
    for _ in range(refine_steps):
        step_alpha, step_beta = step_alpha / 2, step_beta / 2
        centre = best()
        neighbourhood = [
            (max(0.0, centre.alpha + i * step_alpha), centre.beta + j * step_beta)
            for i in (-1, 0, 1)
            for j in (-1, 0, 1)
        ]
        evaluate(neighbourhood)
    winner = best()
    return TuneResult(
        alpha=winner.alpha,
        beta=winner.beta,
        wer=winner.wer,
        cer=winner.cer,
        table=tuple(evaluated.values()),
    )


def _spacing(values: Sequence[float]) -> float:
    """Smallest gap between distinct grid values (1.0 for a single value)."""
    distinct = sorted(set(values))
    if len(distinct) < 2:
        return 1.0
    return float(min(b - a for a, b in zip(distinct, distinct[1:], strict=False)))


def beam_decode_fn(
    scorer_file,
    alphabet=None,
    beam_width: int = C.TUNE_BEAM_WIDTH,
) -> DecodeFn:
    """``decode_fn(log_probs, alpha, beta) -> text``: the prefix beam search with an LM.

    Parameters
    ----------
    scorer_file : ScorerFile
        What :func:`npspeech.lm.package.open_scorer` returned; its LM is loaded once.
    alphabet : Alphabet, optional
        The acoustic model's labels; DeepSpeech's English alphabet by default.
    beam_width : int
        Prefixes kept per frame.

    Notes
    -----
    One :class:`~npspeech.decoder.scorer.Scorer` and one decoder serve every grid point,
    so KenLM's answers (which do not depend on alpha or beta) stay cached across points.
    Each call sets the scorer's ``alpha``/``beta``, which the decoder reads when it
    starts a search.
    """
    from ..alphabet import english
    from ..decoder.beam import BeamSearchDecoder
    from ..decoder.scorer import Scorer, load_language_model

    # KenLM's loading chatter stays off the terminal; a failure raises ScorerError.
    language_model = load_language_model(scorer_file.language_model_path)
    scorer = Scorer(
        language_model,
        C.DEFAULT_ALPHA,
        C.DEFAULT_BETA,
        vocabulary=scorer_file.vocabulary,
        vocabulary_covers_lm=scorer_file.vocabulary_is_the_lms,
    )
    decoder = BeamSearchDecoder(
        alphabet or english(), beam_width=beam_width, scorer=scorer
    )

    def decode(log_probs: np.ndarray, alpha: float, beta: float) -> str:
        scorer.alpha, scorer.beta = float(alpha), float(beta)
        return decoder.decode_text(log_probs)

    return decode


# --- dev-set files --------------------------------------------------------------------
def save_log_probs(
    path: str | os.PathLike,
    log_probs_list: Sequence[np.ndarray],
    references: Sequence[str],
) -> Path:
    """Write a dev set for ``npspeech lm tune --log-probs`` (compressed ``.npz``).

    Parameters
    ----------
    log_probs_list : sequence of ndarray, each shape (T_i, V), float32
    references : sequence of str
    """
    _check_inputs(log_probs_list, references)
    arrays = {
        f"{_KEY_PREFIX}{i}": np.asarray(lp) for i, lp in enumerate(log_probs_list)
    }
    arrays["references"] = np.asarray(list(references), dtype=np.str_)
    path = Path(path)
    with open(path, "wb") as handle:
        np.savez_compressed(handle, **arrays)
    return path


def load_log_probs(path: str | os.PathLike) -> tuple[list[np.ndarray], list[str]]:
    """Read a dev set written by :func:`save_log_probs` (no pickle).

    Returns
    -------
    log_probs_list : list of ndarray, each shape (T_i, V)
    references : list of str

    Raises
    ------
    DataError
        Naming the file when it is missing, not an ``.npz``, or lacks arrays.
    """
    path = Path(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{path}: log-probabilities file not found") from None
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: not a readable .npz file ({error})") from None
    with archive:
        if not hasattr(archive, "files"):
            raise DataError(f"{path}: expected an .npz archive, found a single array")
        if "references" not in archive.files:
            raise DataError(f"{path}: no 'references' array")
        try:
            references = [str(r) for r in archive["references"]]
        except ValueError as error:
            raise DataError(
                f"{path}: 'references' is not a string array ({error})"
            ) from None
        log_probs_list = []
        for index in range(len(references)):
            key = f"{_KEY_PREFIX}{index}"
            if key not in archive.files:
                raise DataError(f"{path}: missing array {key!r} for reference {index}")
            log_probs_list.append(archive[key])
    _check_inputs(log_probs_list, references)
    return log_probs_list, references
