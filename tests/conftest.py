"""Fixtures every test folder shares (defined in ``tests/support/fixtures.py``)."""

from tests.support.fixtures import triton

__all__ = ["triton"]
