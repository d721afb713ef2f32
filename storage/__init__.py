"""Storage: where accesslog's data and secrets live, below the transforms.

``warehouse`` (layout, atomic files, run manifests), ``keystore`` (pseudonymization keys),
``retention`` (partitions past the window, key shredding) and ``audit`` (records of retention and
data-subject actions). Nothing here imports Apache Beam, the transforms or the CLI."""
