from typing import Protocol

import numpy as np
import numpy.typing as npt

class _LanguageModel(Protocol):
    def score_word(self, state: int, word: bytes) -> tuple[float, int]: ...
    def score_end(self, state: int) -> float: ...

class LmCache:
    max_entries: int
    def __init__(self, max_entries: int = ...) -> None: ...
    def __len__(self) -> int: ...

class PrefixBeamSearch:
    frames_seen: int
    lm_misses: int
    def __init__(
        self,
        n_classes: int,
        blank: int,
        space: int,
        beam_width: int,
        cutoff_top_n: int,
        cutoff_prob: float,
        lm: _LanguageModel | None,
        alpha: float,
        beta: float,
        oov_penalty: float,
        oov_word_penalty: float,
        use_vocabulary: bool,
        vocab_start: npt.NDArray[np.int32],
        vocab_label: npt.NDArray[np.int32],
        vocab_node: npt.NDArray[np.int32],
        vocab_terminal: npt.NDArray[np.uint8],
        hot_start: npt.NDArray[np.int32],
        hot_label: npt.NDArray[np.int32],
        hot_node: npt.NDArray[np.int32],
        hot_boost: npt.NDArray[np.float64],
        hot_terminal: npt.NDArray[np.uint8],
        lm_cache: LmCache | None = None,
        unknown_words_alike: bool = False,
    ) -> None: ...
    def feed(self, log_probs: npt.NDArray[np.float32]) -> None: ...
    def raise_pending(self) -> None: ...
    def best(self, n_best: int) -> list[tuple[npt.NDArray[np.int32], float]]: ...
    @property
    def n_live_nodes(self) -> int: ...

def viterbi_align(
    log_probs: npt.NDArray[np.float32],
    labels: npt.NDArray[np.int32],
    blank: int,
    fold_space: int = -1,
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float64]]: ...
