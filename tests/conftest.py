"""Fixtures every test folder shares (defined in ``tests/support/fixtures.py``)."""

from tests.support.fixtures import huge_pages_advised, s3_repository, s3_server, triton

__all__ = ["huge_pages_advised", "s3_repository", "s3_server", "triton"]
