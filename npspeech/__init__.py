"""npspeech: framework-free speech-to-text.

Audio in, text out, and the training that makes the model, with NumPy, Numba and Cython.
DeepSpeech's corpus CSVs, ``alphabet.txt``, ``.scorer`` files and MFCC front end are read
as they are.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("npspeech")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
