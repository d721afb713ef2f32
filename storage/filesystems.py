"""Where a warehouse (or an input) lives: a local folder, or an object store through pyarrow.fs.

`s3://bucket/prefix` (AWS or any S3-compatible store), `gs://bucket/prefix` and `hdfs://host/path`
are opened with pyarrow's own filesystems: the same library that writes the Parquet files, with a
C++ S3 client, no extra dependency, and datasets DuckDB scans directly. (fsspec would add s3fs and
its async stack; Beam's FileSystems cannot hand a file to pyarrow's Parquet writer.)

S3 settings come from the environment, as every S3 client reads them: AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_REGION, and AWS_ENDPOINT_URL for a store other than AWS (e.g.
http://127.0.0.1:9000). They are read where the files are opened (a Beam worker), never pickled
with the pipeline: transforms carry the warehouse URI, not a filesystem object.

Object stores have no rename: a file is written straight to its name and appears whole when the
upload completes (readers never see part of one). What that means for commits: storage.warehouse.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from urllib.parse import urlparse

import pyarrow.fs as pafs

from schemas.errors import SettingError

OBJECT_SCHEMES = ("s3", "gs", "gcs", "hdfs")


def is_remote(location: str | os.PathLike) -> bool:
    """True for s3://, gs:// and hdfs:// locations."""
    return urlparse(str(location)).scheme in OBJECT_SCHEMES


@dataclass(frozen=True)
class Store:
    """A filesystem and the root path of a location in it ('bucket/prefix' for object stores)."""

    fs: pafs.FileSystem
    root: str
    uri: str

    @property
    def remote(self) -> bool:
        return not isinstance(self.fs, pafs.LocalFileSystem)

    def path(self, *parts: str) -> str:
        """The filesystem path of `parts` below the root, joined with '/'."""
        return "/".join([self.root.rstrip("/"), *(p.strip("/") for p in parts if p)])

    def uri_of(self, path: str) -> str:
        """The URI of a filesystem path of this store (what a user can pass back)."""
        if not self.remote:
            return path
        return f"{urlparse(self.uri).scheme}://{path}"


def _s3() -> pafs.S3FileSystem:
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    options = {"region": os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"}
    if endpoint:
        # The AWS SDK's default request checksums (2025) are not understood by most S3-compatible
        # stores (S3Proxy answers XAmzContentSHA256Mismatch): send them only where required. Read
        # by the SDK when pyarrow first initializes it in this process.
        os.environ.setdefault("AWS_REQUEST_CHECKSUM_CALCULATION", "WHEN_REQUIRED")
        os.environ.setdefault("AWS_RESPONSE_CHECKSUM_VALIDATION", "WHEN_REQUIRED")
        parsed = urlparse(endpoint if "://" in endpoint else f"https://{endpoint}")
        options.update(endpoint_override=parsed.netloc, scheme=parsed.scheme or "https")
    if os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY"):
        options.update(access_key=os.environ["AWS_ACCESS_KEY_ID"], secret_key=os.environ["AWS_SECRET_ACCESS_KEY"],
                       session_token=os.environ.get("AWS_SESSION_TOKEN"))
    return pafs.S3FileSystem(**options)


@functools.lru_cache(maxsize=32)
def _open(uri: str, env_key: tuple) -> Store:
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise SettingError("{} {uri!r}: name a bucket, e.g. s3://accesslog/warehouse", "warehouse", uri=uri)
        return Store(_s3(), f"{parsed.netloc}{parsed.path}".rstrip("/"), uri)
    try:
        fs, root = pafs.FileSystem.from_uri(uri)
    except Exception as e:   # pyarrow says what is missing (a library, credentials) in its own words
        raise SettingError("cannot open {uri}: {reason}", uri=uri, reason=str(e).splitlines()[0]) from None
    return Store(fs, root.rstrip("/"), uri)


def open_store(location: str | os.PathLike) -> Store:
    """The Store of a local path or an s3://, gs:// or hdfs:// URI."""
    text = str(location)
    if not is_remote(text):
        return Store(pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(text)), text)
    env = tuple(os.environ.get(k) for k in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID",
                                            "AWS_REGION"))
    return _open(text.rstrip("/"), env)


def store_error(store: Store, what: str, error: Exception) -> SettingError:
    """An object store that cannot be reached or written, as one line naming the setting to fix."""
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    return SettingError("cannot {what} warehouse {uri}: {reason}; check {} and the store's credentials "
                        "(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL)", "warehouse",
                        what=what, uri=store.uri, reason=reason)
