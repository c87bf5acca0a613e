"""Bundled sample videos for `make demo` (see make_samples.py)."""
