"""PyTorch twins of npspeech models and training loops, for side-by-side benchmarks.

PyTorch is a test and benchmark dependency only (the ``peers`` extra); nothing under
``npspeech/`` imports this package.
"""
