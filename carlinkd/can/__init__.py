"""Vehicle bus: python-can source, DBC decoding, signal catalog."""
