"""accesslog: privacy-first access-log pipeline (Apache Beam + pyarrow + DuckDB)."""
from setuptools import find_packages, setup

setup(
    name="accesslog",
    version="0.1.0",
    description="Privacy-first access-log pipeline: nginx logs -> pseudonymized Parquet -> DuckDB usage stats",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["accesslog", "accesslog.*", "pipelines", "pipelines.*",
                                    "transforms", "transforms.*", "storage", "storage.*", "schemas", "schemas.*"]),
    install_requires=[
        "apache-beam>=2.60,<3",
        "pyarrow>=15,<27",
        "duckdb>=1.1,<3",
        "orjson>=3.9,<4",
        "maxminddb>=2.5,<4",
        "numpy>=1.26,<3",
        "ua-parser>=1.0,<2",
        "referer-parser>=0.4,<1",   # its referers.json: search engines, social networks, webmail (accesslog.referrers)
        "cryptography>=41",
    ],
    extras_require={
        "test": ["pytest>=8,<10", "hypothesis>=6.100,<7", "zstandard>=0.21", "ruff>=0.6,<1", "mmdb-writer>=0.2,<1",
                 "nbclient>=0.10,<1", "nbformat>=5.10,<6", "ipykernel>=6.29,<8", "matplotlib>=3.8,<4",
                 "pytest-rerunfailures>=14,<17", "pandas>=2,<3",
                 # drives Debian's chromium (executable_path) in tests/test_report_browser.py; downloads no browser
                 "playwright>=1.45,<2"],
        # the analysts' notebooks (make notebook): JupyterLab, pandas for accesslog.open(...).df(), plots
        "notebook": ["jupyterlab>=4,<5", "pandas>=2,<3", "matplotlib>=3.8,<4", "ipykernel>=6.29,<8"],
        # Rust resolver for ua-parser: ~15x faster per distinct user agent (transforms/enrich.py)
        "fast": ["ua-parser-rs>=0.1,<1"],
    },
    package_data={"accesslog": ["report.js"]},   # the report page's script, inlined by accesslog.report
    entry_points={"console_scripts": ["accesslog=accesslog.cli:entry"]},
)
