"""features kernels of the numpy_ref backend."""

__all__: list[str] = []
