"""accesslog: a privacy-first access-log pipeline (Apache Beam + pyarrow + DuckDB).

The public API (documented in the README, "Python API"): run logs into a warehouse, open it with
DuckDB, compute the usage reports, apply retention, export or erase a person's records. Names are
loaded on first use, so `import accesslog` (and the CLI) stays fast.
"""

__version__ = "0.1.0"

__all__ = ["run", "open", "Warehouse", "open_warehouse", "usage_stats", "apply_retention", "find_subject_rows",
           "erase_subject",
           "Settings", "RunResult", "AccesslogError", "SettingError", "__version__"]

_HOMES = {"AccesslogError": "schemas.errors", "SettingError": "schemas.errors"}


def __getattr__(name: str):
    if name in __all__:
        from importlib import import_module
        return getattr(import_module(_HOMES.get(name, "accesslog.api")), name)
    raise AttributeError(f"module 'accesslog' has no attribute {name!r}")
