"""One resolver from a lake URI to a file system and a path, for everything that reads the lake's files directly
(the Delta log reader, the streaming checkpoint reader): a local path, file://, or s3:// / s3a:// (Spark's scheme
for the same objects) at S3_ENDPOINT when set."""

from __future__ import annotations

import os


def resolve(uri: str, s3_endpoint: str | None = None):
    """(pyarrow FileSystem, path inside it). For S3 the path is `bucket/key`; credentials come from the usual AWS
    variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION)."""
    from pyarrow import fs

    if "://" not in uri:
        return fs.LocalFileSystem(), os.path.abspath(uri)
    scheme, rest = uri.split("://", 1)
    if scheme == "file":
        return fs.LocalFileSystem(), rest
    if scheme in ("s3", "s3a"):
        if s3_endpoint is None:
            from ecomlake.settings import s3_endpoint as configured

            s3_endpoint = configured()
        options = {"endpoint_override": s3_endpoint} if s3_endpoint else {}
        return fs.S3FileSystem(**options), rest.rstrip("/")
    return fs.FileSystem.from_uri(uri)
