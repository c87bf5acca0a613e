"""Signed test videos: re-exported from :mod:`fakescope.benchmarks.c2pa_media`."""

from fakescope.benchmarks.c2pa_media import *  # noqa: F403
