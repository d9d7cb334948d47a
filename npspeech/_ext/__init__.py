"""Compiled extensions built from ``csrc/`` (see setup.py). Import them via
``npspeech._native``.
"""
