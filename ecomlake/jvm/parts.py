"""The JVM parts, pinned here and nowhere else, fetched with `mvn` into a cache that later runs reuse.

The versions are the cluster stack's (docker/spark/Dockerfile, docker-compose.yml; tests/test_jvm_parts.py checks
they agree). Maven resolves through the machine's own setup (settings.xml, mirrors, local repository) from a small
generated pom; this module then links or unpacks what Maven resolved into `<cache>/<folder>` and writes a marker, so
a second call costs nothing. The embedded stack never needs any of it.

    python -m ecomlake.jvm.parts [--only spark|kafka|trino] [--print-path NAME]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from ecomlake.errors import EcomlakeError
from ecomlake.settings import jvm_cache_dir

SCALA = "2.13"
SPARK_VERSION = "4.0.1"
# spark-token-provider-kafka-0-10 4.0.1 is missing from this project's Maven Central; 4.0.0 is link-compatible (every
# method spark-sql-kafka-0-10 4.0.1 calls in it exists with the same signature).
SPARK_TOKEN_PROVIDER_VERSION = "4.0.0"
DELTA_VERSION = "4.0.1"
KAFKA_CLIENTS_VERSION = "3.9.0"  # what spark-sql-kafka-0-10 4.0.1 is built against
COMMONS_POOL2_VERSION = "2.12.0"
HADOOP_AWS_VERSION = "3.4.1"  # must equal pyspark's own hadoop-client-api
AWS_SDK_V2_VERSION = "2.24.6"  # the bundle hadoop-aws 3.4.1 is built against
KAFKA_VERSION = "3.9.1"
# Kafka 3.9's distribution logs through slf4j-reload4j (the server's pom brings no binding): the same versions.
SLF4J_VERSION = "1.7.36"
RELOAD4J_VERSION = "1.2.25"
# Trino 478 (and every 47x delta-lake plugin zip) is not on this project's Maven Central; 476 is, as the full server.
TRINO_VERSION = "476"
HIVE_METASTORE_VERSION = "4.0.1"  # the compose image's (docker/hive-metastore/Dockerfile)
HADOOP_METASTORE_VERSION = "3.3.6"  # the Hadoop of the apache/hive:4.0.1 image; its bin tarball ships none

MAVEN_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
MARKER = ".ecomlake-fetched"
GROUPS = ("spark", "kafka", "trino")


@dataclass(frozen=True)
class Part:
    group: str  # what --only selects
    name: str  # what --print-path names
    folder: str  # below the cache directory
    artifacts: tuple[str, ...]  # groupId:artifactId:version[:type[:classifier]]
    transitive: bool = False
    keep: tuple[str, ...] = ()  # for an archive: the entries (below its top folder) to unpack

    def fingerprint(self) -> str:
        return json.dumps({"artifacts": self.artifacts, "transitive": self.transitive, "keep": self.keep})


PARTS = (
    # What SPARK_EXTRA_JARS names: the image's /opt/ecomlake-jars.
    Part("spark", "spark-jars", "spark-jars", (
        f"io.delta:delta-spark_{SCALA}:{DELTA_VERSION}",
        f"io.delta:delta-storage:{DELTA_VERSION}",
        f"org.apache.spark:spark-sql-kafka-0-10_{SCALA}:{SPARK_VERSION}",
        f"org.apache.spark:spark-token-provider-kafka-0-10_{SCALA}:{SPARK_TOKEN_PROVIDER_VERSION}",
        f"org.apache.kafka:kafka-clients:{KAFKA_CLIENTS_VERSION}",
        f"org.apache.commons:commons-pool2:{COMMONS_POOL2_VERSION}",
    )),
    # s3a: the image puts these in Spark's own jars (JVM class path from the start); here, spark.driver.extraClassPath.
    Part("spark", "spark-s3-jars", "spark-s3-jars", (
        f"org.apache.hadoop:hadoop-aws:{HADOOP_AWS_VERSION}",
        f"software.amazon.awssdk:bundle:{AWS_SDK_V2_VERSION}",
    )),
    Part("kafka", "kafka-libs", f"kafka-{KAFKA_VERSION}/libs", (
        f"org.apache.kafka:kafka_{SCALA}:{KAFKA_VERSION}",
        f"org.slf4j:slf4j-reload4j:{SLF4J_VERSION}",
        f"ch.qos.reload4j:reload4j:{RELOAD4J_VERSION}",
    ), transitive=True),
    Part("trino", "trino-server", f"trino-server-{TRINO_VERSION}", (
        f"io.trino:trino-server:{TRINO_VERSION}:tar.gz",
    ), keep=("bin/", "lib/", "plugin/delta-lake/", "plugin/hive/", "NOTICE", "README.txt")),
    # Trino's metastore as compose runs it (ecomlake/jvm/hive_metastore.py): the standalone server with its Derby
    # schema scripts, and the Hadoop (with s3a and its AWS SDK v1 bundle) the image puts beside it.
    Part("trino", "hive-metastore", f"hive-metastore-{HIVE_METASTORE_VERSION}", (
        f"org.apache.hive:hive-standalone-metastore-server:{HIVE_METASTORE_VERSION}:tar.gz:bin",
    ), keep=("lib/", "scripts/metastore/upgrade/derby/")),
    Part("trino", "hive-metastore-hadoop", f"hive-metastore-hadoop-{HADOOP_METASTORE_VERSION}", tuple(
        f"org.apache.hadoop:{name}:{HADOOP_METASTORE_VERSION}"
        for name in ("hadoop-common", "hadoop-hdfs-client", "hadoop-hdfs", "hadoop-aws")
    ), transitive=True),
)


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def part(name: str) -> Part:
    for p in PARTS:
        if p.name == name:
            return p
    raise EcomlakeError(f"no JVM part named {name!r}; use one of: {', '.join(p.name for p in PARTS)}")


def path(name: str, cache: Path | None = None) -> Path:
    """Where a part lives in the cache (fetched or not)."""
    return (cache or jvm_cache_dir()) / part(name).folder


def is_fetched(name: str, cache: Path | None = None) -> bool:
    marker = path(name, cache) / MARKER
    return marker.is_file() and marker.read_text() == part(name).fingerprint()


def require(name: str, cache: Path | None = None) -> Path:
    """A fetched part's directory, or one line telling how to get it."""
    where = path(name, cache)
    if not is_fetched(name, cache):
        raise EcomlakeError(f"{name} ({', '.join(part(name).artifacts)}) is not in {where.parent}: run `make jvm-parts`")
    return where


def spark_jars_dir(cache: Path | None = None) -> Path:
    """The directory to give SPARK_EXTRA_JARS (every REQUIRED_JARS prefix of ecomlake.spark is in it)."""
    return path("spark-jars", cache)


def spark_s3_jars_dir(cache: Path | None = None) -> Path:
    return path("spark-s3-jars", cache)


def kafka_libs_dir(cache: Path | None = None) -> Path:
    return path("kafka-libs", cache)


def trino_server_dir(cache: Path | None = None) -> Path:
    """The unpacked Trino server: bin/, lib/, plugin/delta-lake, plugin/hive (no etc/: the launcher writes it)."""
    return path("trino-server", cache)


def fetch(groups: Iterable[str] = GROUPS, cache: Path | None = None,
          log: Callable[[str], None] = _progress) -> dict[str, Path]:
    """Fetch every part of `groups` that is not cached yet. Returns {part name: directory}."""
    cache = cache or jvm_cache_dir()
    wanted = set(groups)
    unknown = wanted - set(GROUPS)
    if unknown:
        raise EcomlakeError(f"no JVM part group {', '.join(sorted(unknown))}; use one of: {', '.join(GROUPS)}")
    return {p.name: _fetch_part(p, cache, log) for p in PARTS if p.group in wanted}


def _fetch_part(p: Part, cache: Path, log: Callable[[str], None]) -> Path:
    dest = cache / p.folder
    if is_fetched(p.name, cache):
        return dest
    _mvn()
    log(f"jvm-parts: fetching {p.name} ({', '.join(p.artifacts)}) with mvn into {dest}")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{p.name}-", dir=cache) as tmp:
        work = Path(tmp)
        staging = work / "part"
        staging.mkdir()
        for file in _resolve(p, work):
            if file.name.endswith(".tar.gz"):
                _unpack(file, staging, p.keep)
            else:
                _link_or_copy(file, staging / file.name)
        (staging / MARKER).write_text(p.fingerprint())
        if is_fetched(p.name, cache):  # another process finished first: keep what may already be in use
            return dest
        if dest.exists():
            shutil.rmtree(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(dest)
    return dest


def _mvn() -> str:
    mvn = shutil.which("mvn")
    if not mvn:
        raise EcomlakeError("fetching the JVM parts needs Apache Maven (`mvn`) on PATH: apt-get install maven "
                            "(or brew install maven); the embedded stack needs none of it")
    return mvn


def _pom(p: Part) -> str:
    deps = []
    for coords in p.artifacts:
        group, artifact, version, *kind = coords.split(":")
        type_ = f"<type>{kind[0]}</type>" if kind else ""
        type_ += f"<classifier>{kind[1]}</classifier>" if len(kind) > 1 else ""
        closed = "" if p.transitive else \
            "<exclusions><exclusion><groupId>*</groupId><artifactId>*</artifactId></exclusion></exclusions>"
        deps.append(f"<dependency><groupId>{group}</groupId><artifactId>{artifact}</artifactId>"
                    f"<version>{version}</version>{type_}{closed}</dependency>")
    return ('<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
            f"<groupId>ecomlake.jvm</groupId><artifactId>{p.name}</artifactId><version>0</version>"
            f"<packaging>pom</packaging><dependencies>{''.join(deps)}</dependencies></project>\n")


def _resolve(p: Part, work: Path) -> list[Path]:
    """The files Maven resolved for a part, in the local repository (nothing is copied yet)."""
    (work / "pom.xml").write_text(_pom(p))
    listing = work / "classpath.txt"
    cmd = [_mvn(), "-q", "-B", "-Dstyle.color=never", "-f", str(work / "pom.xml"),
           f"{MAVEN_DEPENDENCY_PLUGIN}:build-classpath", f"-Dmdep.outputFile={listing}", "-DincludeScope=runtime"]
    run = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if run.returncode != 0 or not listing.is_file():
        output = re.sub(r"\x1b\[[0-9;]*m", "", run.stdout + run.stderr)
        errors = [line[len("[ERROR] "):].strip() for line in output.splitlines()
                  if line.startswith("[ERROR] ") and line[8:].strip()]
        reason = errors[0] if errors else f"exit code {run.returncode}"
        raise EcomlakeError(f"mvn could not fetch {p.name}: {reason[:400]}")
    return [Path(f) for f in listing.read_text().strip().split(os.pathsep) if f]


def _link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link where the cache shares a file system with Maven's repository (the AWS bundle alone is ~500 MB)."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _unpack(archive: Path, dest: Path, keep: tuple[str, ...]) -> None:
    """Unpack the `keep` entries of a tar.gz with one top folder into `dest`, dropping that folder. Trino's plugins
    hard-link the jars they share, also with plugins left out, so those link targets are unpacked aside first."""
    aside = ".link-targets/"
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        kept = {m.name for m in members if m.name.partition("/")[2].startswith(keep)}
        targets = {m.linkname for m in members if m.name in kept and m.islnk()}
        renamed: dict[str, str] = {}
        for member in members:
            if member.name not in kept and member.name not in targets:
                continue
            inner = member.name.partition("/")[2]
            renamed[member.name] = inner if member.name in kept else aside + inner
            member.name = renamed[member.name]
            if member.islnk():
                member.linkname = renamed[member.linkname]
            tar.extract(member, dest, filter="data")
    shutil.rmtree(dest / aside, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ecomlake jvm-parts", description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=GROUPS, action="append",
                        help="fetch only this group (repeatable); default: all")
    parser.add_argument("--print-path", metavar="NAME", choices=[p.name for p in PARTS] + ["cache"],
                        help="fetch what NAME needs, then print only its directory (e.g. for SPARK_EXTRA_JARS)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.print_path == "cache":
        print(jvm_cache_dir())
        return 0
    if args.print_path:
        fetch([part(args.print_path).group])
        print(path(args.print_path))
        return 0
    for name, where in fetch(args.only or GROUPS).items():
        print(f"{name}: {where}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except EcomlakeError as err:
        print(f"ecomlake jvm-parts: error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
