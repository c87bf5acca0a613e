"""FakeScope."""
