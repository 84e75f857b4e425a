"""Seam conformance: the same cases (tests/conformance_cases.py) through every lake engine and Kafka source.

delta-rs and the python source run on the shared Spark session. delta-spark and spark-kafka need their jars
(SPARK_EXTRA_JARS or SPARK_PACKAGES); with them, the cases run in a subprocess with its own Spark session
(the shared one is built without them), otherwise they are skipped with the reason."""

from __future__ import annotations

import os

import pytest

import conformance_cases as cases
from conftest import cli_env
from ecomlake.settings import Settings
from ecomlake.spark import REQUIRED_JARS, missing_jars


def _jvm_skip_reason(setting: str, value: str) -> str | None:
    env_settings = Settings.from_env({k: v for k, v in os.environ.items() if k.startswith("SPARK_")})
    missing = missing_jars(env_settings, setting, value)
    if missing:
        coords = REQUIRED_JARS[(setting, value)][1]
        return (f"{setting}={value} needs jars {', '.join(p + '*.jar' for p in missing)} "
                f"(set SPARK_EXTRA_JARS, or SPARK_PACKAGES={coords})")
    return None


@pytest.fixture(scope="module")
def delta_spark_results(tmp_path_factory, broker_settings):
    reason = _jvm_skip_reason("LAKE_ENGINE", "delta-spark")
    if reason:
        pytest.skip(reason)
    workdir = tmp_path_factory.mktemp("delta-spark")
    return cases.run_in_subprocess("lake", "delta-spark", str(workdir), cli_env(broker_settings))


@pytest.fixture(scope="module")
def spark_kafka_results(tmp_path_factory, broker_settings):
    reason = _jvm_skip_reason("KAFKA_SOURCE", "spark-kafka")
    if reason:
        pytest.skip(reason)
    workdir = tmp_path_factory.mktemp("spark-kafka")
    return cases.run_in_subprocess("source", "spark-kafka", str(workdir), cli_env(broker_settings))


@pytest.mark.parametrize("case", list(cases.LAKE_CASES))
@pytest.mark.parametrize("engine_name", ["delta-rs", "delta-spark"])
def test_lake_engine(engine_name, case, spark, tmp_path, request):
    if engine_name == "delta-spark":
        result = request.getfixturevalue("delta_spark_results")[case]
        assert result == "ok", result
        return
    from ecomlake.lake import get_engine

    settings = Settings.from_env({"LAKEHOUSE_URI": str(tmp_path)})
    cases.LAKE_CASES[case](get_engine(spark, settings, engine_name), spark, str(tmp_path / case))


@pytest.mark.parametrize("case", list(cases.SOURCE_CASES))
@pytest.mark.parametrize("source", ["python", "spark-kafka"])
def test_kafka_source(source, case, spark, settings, request):
    if source == "spark-kafka":
        result = request.getfixturevalue("spark_kafka_results")[case]
        assert result == "ok", result
        return
    cases.SOURCE_CASES[case](spark, settings)
