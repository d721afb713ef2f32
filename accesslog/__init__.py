"""accesslog: a privacy-first nginx access-log pipeline (Apache Beam + pyarrow + DuckDB)."""

__version__ = "0.1.0"
