"""One resolver from a lake URI to a file system and a path, for everything that reads the lake's files directly
(the Delta log reader, the streaming checkpoint reader): a local path, file://, or s3:// / s3a:// (Spark's scheme
for the same objects) at S3_ENDPOINT when set. `delta_rs_location` says the same to delta-rs."""

from __future__ import annotations

import os

DEFAULT_REGION = "us-east-1"  # MinIO's and moto's region when none is configured


def is_s3(uri: str) -> bool:
    return uri.startswith(("s3://", "s3a://"))


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
        from ecomlake.settings import aws_region

        if s3_endpoint is None:
            from ecomlake.settings import s3_endpoint as configured

            s3_endpoint = configured()
        # An endpoint with its scheme (http://host:port) is taken as it is; path-style is pyarrow's default there.
        options = {"endpoint_override": s3_endpoint} if s3_endpoint else {}
        return fs.S3FileSystem(region=aws_region() or DEFAULT_REGION, **options), rest.rstrip("/")
    return fs.FileSystem.from_uri(uri)


def delta_rs_location(uri: str, s3_endpoint: str | None = None) -> tuple[str, dict[str, str] | None]:
    """(table URI, storage_options) for the `deltalake` package. delta-rs speaks s3:// where Spark's Hadoop file
    system speaks s3a://, and does not read S3_ENDPOINT: the endpoint, plain HTTP when the endpoint is http://,
    the region and path-style requests (as Spark's fs.s3a.path.style.access) are passed explicitly; the keys come
    from the AWS_* variables, which delta-rs reads itself. Commits are safe without a locking provider: delta-rs
    writes each log entry with a conditional put (If-None-Match: *), which AWS S3, current MinIO and moto honour."""
    if not is_s3(uri):
        return uri, None
    from ecomlake.settings import aws_region

    if s3_endpoint is None:
        from ecomlake.settings import s3_endpoint as configured

        s3_endpoint = configured()
    location = "s3://" + uri.split("://", 1)[1]
    options = {"AWS_REGION": aws_region() or DEFAULT_REGION}
    if s3_endpoint:
        options["AWS_ENDPOINT_URL"] = s3_endpoint
        options["AWS_VIRTUAL_HOSTED_STYLE_REQUEST"] = "false"
        if s3_endpoint.startswith("http://"):
            options["AWS_ALLOW_HTTP"] = "true"
    return location, options
