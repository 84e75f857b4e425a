"""The one resolver from a lake URI to a file system: local paths, file://, and s3a:// as Spark spells S3."""

from __future__ import annotations

from pyarrow import fs

from ecomlake.lake.fs import resolve


def test_a_local_path_and_file_uri_resolve_to_the_same_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lake" / "silver").mkdir(parents=True)
    relative, path = resolve("lake/silver")
    by_uri, same = resolve(f"file://{tmp_path}/lake/silver")
    assert isinstance(relative, fs.LocalFileSystem) and isinstance(by_uri, fs.LocalFileSystem)
    assert path == same == str(tmp_path / "lake" / "silver")
    assert relative.get_file_info(path).type == fs.FileType.Directory


def test_s3a_and_s3_name_the_same_bucket_and_key_at_the_configured_endpoint(monkeypatch):
    monkeypatch.setenv("S3_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    s3a, key = resolve("s3a://lakehouse/silver/orders_clean/")
    s3, same = resolve("s3://lakehouse/silver/orders_clean")
    assert s3a.type_name == s3.type_name == "s3"
    assert key == same == "lakehouse/silver/orders_clean"
    assert "127.0.0.1:9" in repr(s3a.__reduce__())
