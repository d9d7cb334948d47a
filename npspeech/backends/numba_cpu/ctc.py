"""ctc kernels of the numba_cpu backend."""

__all__: list[str] = []
