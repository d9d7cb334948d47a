"""Decoders: per-frame class probabilities in, text out."""
