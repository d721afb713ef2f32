"""Composite Beam transforms over chunks of Arrow records (usable in batch and streaming)."""
