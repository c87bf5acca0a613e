"""Fixtures every test folder shares (defined in ``tests/support/fixtures.py``), and the backstop
that ends the run when a hang holds the GIL (``tests/support/hang_backstop.py``)."""

from tests.support.fixtures import huge_pages_advised, s3_repository, s3_server, triton

pytest_plugins = ["tests.support.hang_backstop"]

__all__ = ["huge_pages_advised", "s3_repository", "s3_server", "triton"]
