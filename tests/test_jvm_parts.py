"""The JVM parts: ecomlake/jvm/parts.py pins them once, and the Dockerfile, compose file, Python pins and docs agree
with it (each read from its own file, never restated here); the fetch step really fetches them, into a cache."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from ecomlake import spark
from ecomlake.errors import EcomlakeError
from ecomlake.jvm import parts
from ecomlake.settings import jvm_cache_dir
from fixtures_kafka import fetched

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "docker" / "spark" / "Dockerfile"
# Dockerfile folder -> the part that mirrors it
IMAGE_FOLDERS = {"/opt/ecomlake-jars": "spark-jars", "/opt/spark/jars": "spark-s3-jars"}
# how the docs name a part's version -> the pins it must equal
DOC_MENTIONS = {
    r"apache/kafka:(\S+?)(?=[`\s|),])": ("KAFKA_VERSION",),
    r"Apache Kafka (\d+\.\d+\.\d+)": ("KAFKA_VERSION",),
    r"trinodb/trino:(\S+?)(?=[`\s|),])": ("TRINO_VERSION",),
    r"\bTrino (\d{3})\b": ("TRINO_VERSION",),
    r"Delta Lake (?:for Spark )?(\d+\.\d+\.\d+)": ("DELTA_VERSION",),
    r"delta-(?:spark|storage)\S* (\d+\.\d+\.\d+)": ("DELTA_VERSION",),
    r"Kafka connector (\d+\.\d+\.\d+)": ("SPARK_VERSION",),
    r"\bSpark (\d+\.\d+\.\d+)": ("SPARK_VERSION",),
    r"spark:(\d+\.\d+\.\d+)-scala(\d+\.\d+)": ("SPARK_VERSION", "SCALA"),
    r"hadoop-aws (\d+\.\d+\.\d+)": ("HADOOP_AWS_VERSION",),
    r"kafka-clients[ -](\d+\.\d+\.\d+)": ("KAFKA_CLIENTS_VERSION",),
    r"AWS SDK (?:v2 )?(?:bundle )?(\d+\.\d+\.\d+)": ("AWS_SDK_V2_VERSION",),
}


def dockerfile_args() -> dict[str, str]:
    return dict(re.findall(r"(?m)^ARG (\w+)=(\S+)$", DOCKERFILE.read_text()))


def coordinates(maven_path: str) -> str:
    *group, artifact, version, _ = maven_path.split("/")
    return f"{'.'.join(group)}:{artifact}:{version}"


def test_dockerfile_args_are_the_pins():
    args = dockerfile_args()
    pinned = {name: args[name] for name in args if hasattr(parts, name)}
    assert {"SCALA", "SPARK_VERSION", "DELTA_VERSION", "KAFKA_CLIENTS_VERSION", "COMMONS_POOL2_VERSION",
            "HADOOP_AWS_VERSION", "AWS_SDK_V2_VERSION"} <= pinned.keys()
    assert {name: getattr(parts, name) for name in pinned} == pinned
    base = re.search(r"(?m)^FROM (\S+)", DOCKERFILE.read_text()).group(1)
    assert base.startswith(f"spark:{parts.SPARK_VERSION}-scala{parts.SCALA}-"), base


@pytest.mark.parametrize("folder", IMAGE_FOLDERS)
def test_the_image_bakes_exactly_the_jars_the_fetch_step_fetches(folder):
    args = dockerfile_args()
    baked = [re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], p)
             for p in re.findall(rf'fetch {re.escape(folder)} "([^"]+)"', DOCKERFILE.read_text())]
    assert sorted(map(coordinates, baked)) == sorted(parts.part(IMAGE_FOLDERS[folder]).artifacts)


def test_compose_images_are_the_pins():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    images = [s["image"] for s in compose["services"].values() if "image" in s]
    pins = {"apache/kafka": parts.KAFKA_VERSION, "trinodb/trino": parts.TRINO_VERSION}
    used = {image.partition(":")[0]: image.partition(":")[2] for image in images if image.partition(":")[0] in pins}
    assert used == pins


def test_python_pins_match_the_jars_and_pyspark_hadoop():
    pyproject = (REPO / "pyproject.toml").read_text()
    assert f'"pyspark=={parts.SPARK_VERSION}"' in pyproject and f'"delta-spark=={parts.DELTA_VERSION}"' in pyproject
    import pyspark

    bundled = [p.name for p in (Path(pyspark.__file__).parent / "jars").glob("hadoop-client-api-*.jar")]
    assert bundled == [f"hadoop-client-api-{parts.HADOOP_AWS_VERSION}.jar"], "hadoop-aws must match pyspark's Hadoop"
    assert (spark.SPARK_VERSION, spark.DELTA_VERSION, spark.SCALA) == (parts.SPARK_VERSION, parts.DELTA_VERSION,
                                                                        parts.SCALA)


def test_the_docs_mention_only_the_pinned_versions():
    docs = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    mentions, wrong = 0, []
    for doc in docs:
        text = doc.read_text()
        for pattern, names in DOC_MENTIONS.items():
            for match in re.finditer(pattern, text):
                mentions += 1
                line = text.count("\n", 0, match.start()) + 1
                for value, name in zip(match.groups(), names):
                    if value != getattr(parts, name):
                        wrong.append(f"{doc.relative_to(REPO)}:{line}: {match.group(0).strip()!r} but {name}="
                                     f"{getattr(parts, name)}")
    assert mentions >= 5, "the docs name the cluster stack's versions"
    assert not wrong, "\n".join(wrong)


def test_the_cache_is_a_setting(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ECOMLAKE_JVM_CACHE", str(tmp_path / "from-env"))
    assert parts.main(["--print-path", "cache"]) == 0 and capsys.readouterr().out == f"{tmp_path / 'from-env'}\n"
    assert jvm_cache_dir({"ECOMLAKE_JVM_CACHE": str(tmp_path / "c")}) == tmp_path / "c"
    assert jvm_cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "ecomlake" / "jvm"
    assert parts.spark_jars_dir(tmp_path) == tmp_path / "spark-jars"
    assert parts.kafka_libs_dir(tmp_path) == tmp_path / f"kafka-{parts.KAFKA_VERSION}" / "libs"


def test_without_mvn_one_line_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EcomlakeError) as err:
        parts.fetch(["spark"], cache=tmp_path, log=lambda line: None)
    assert "\n" not in str(err.value) and "apt-get install maven" in str(err.value)
    with pytest.raises(EcomlakeError, match=r"run `make jvm-parts`$"):
        parts.require("kafka-libs", tmp_path)


def test_fetch_gives_every_required_jar_and_the_kafka_server_and_a_second_call_is_instant(monkeypatch):
    dirs = {**fetched("spark"), **fetched("kafka")}
    names = [p.name for p in dirs["spark-jars"].glob("*.jar")]
    for (setting, value), (prefixes, _) in spark.REQUIRED_JARS.items():
        for prefix in prefixes:
            assert any(n.startswith(prefix) for n in names), f"{setting}={value}: no {prefix}*.jar in {dirs['spark-jars']}"
    assert (dirs["kafka-libs"] / f"kafka_{parts.SCALA}-{parts.KAFKA_VERSION}.jar").is_file()
    assert {p.name for p in dirs["spark-s3-jars"].glob("*.jar")} == {
        f"hadoop-aws-{parts.HADOOP_AWS_VERSION}.jar", f"bundle-{parts.AWS_SDK_V2_VERSION}.jar"}

    def no_maven():
        raise AssertionError("a cached part must not run mvn again")

    monkeypatch.setattr(parts, "_mvn", no_maven)
    assert parts.fetch(["spark", "kafka"]) == dirs
    assert parts.spark_jars_dir() == dirs["spark-jars"] and jvm_cache_dir() in dirs["spark-jars"].parents
