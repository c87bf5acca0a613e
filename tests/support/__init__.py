"""What the tests share: servers, media factories, small datasets, helpers."""
