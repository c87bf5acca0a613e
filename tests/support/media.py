"""Test media helpers: re-exported from :mod:`fakescope.benchmarks.media`."""

from fakescope.benchmarks.media import *  # noqa: F403
