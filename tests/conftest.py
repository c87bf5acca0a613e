"""Fixtures every test folder shares (defined in ``tests/support/fixtures.py``)."""

from tests.support.fixtures import s3_repository, s3_server, triton

__all__ = ["s3_repository", "s3_server", "triton"]
