"""Beam pipelines: `python -m pipelines.batch` (and later streaming) with standard Beam options."""
