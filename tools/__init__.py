"""Command-line tools beside the npspeech package (never imported by it)."""
