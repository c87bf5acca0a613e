"""FakeScope web service: upload page, REST API, subscribers, business metrics."""
