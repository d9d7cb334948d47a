import numpy as np
import numpy.typing as npt

def best_path(
    log_probs: npt.NDArray[np.float32], blank: int
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]]: ...
