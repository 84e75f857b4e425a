# ecomlake front door. Every target bootstraps .venv on a fresh machine (needs only python3 and make).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ECOM   := $(BIN)/ecomlake

.DEFAULT_GOAL := help
.PHONY: help install lint test test-deps test-faults test-fast demo dashboard bench soak jvm-parts jars broker-start broker-stop broker-status generate bronze silver \
        gold dbt-test freshness dbt-docs maintain up down ps logs clean

help:
	@echo "make demo    - run the whole pipeline on the embedded stack (broker, bronze, silver, gold, dashboard)"
	@echo "make test    - install everything, lint, and run the test suite"
	@echo "make test-fast - lint and the unit tests that need no server (under 3 minutes)"
	@echo "make dashboard - serve the live dashboard of the lake on http://127.0.0.1:8050/ (DASHBOARD_PORT)"
	@echo "make bench   - measure every stage, write bench/results.json"
	@echo "make broker-start|broker-stop|generate|bronze|silver|gold|dbt-test|freshness|dbt-docs|maintain"
	@echo "make jvm-parts - fetch the cluster stack's JVM parts with mvn (jars, Apache Kafka, Trino) into a cache"
	@echo "make up|down|ps|logs - the cluster stack (docker compose)"

# pip's own notices and setuptools' editable-install warning blocks go to $(VENV)/install.log, shown on failure.
PIP_INSTALL = $(BIN)/python -m pip install --quiet --config-settings editable_mode=compat
PIP_LOGGED  = >>$(VENV)/install.log 2>&1 || { tail -n 40 $(VENV)/install.log; echo "pip install failed (log: $(VENV)/install.log)"; exit 1; }

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing the Python packages into $(VENV) (log: $(VENV)/install.log)"
	@: >$(VENV)/install.log
	@$(BIN)/python -m pip install --quiet --upgrade pip $(PIP_LOGGED)
	@$(PIP_INSTALL) -e '.[dev]' $(PIP_LOGGED)
	@$(BIN)/python -m ecomlake.java --has-system-java || $(PIP_INSTALL) -e '.[dev,jdk]' $(PIP_LOGGED)
	@touch $(STAMP)

install: $(STAMP)

# What the tests need beyond Python: Debian packages (installed when run as root, as in CI) and the JVM parts
# (`make jvm-parts`, cached): chromium is the real browser of tests/test_live_dashboard.py (driven by playwright,
# never playwright's own browser download). Without them the tests that need them skip with one line, except under CI=true.
DEBIAN_TEST_PACKAGES := docker-compose chromium
test-deps: $(STAMP)
	@missing=$$(for p in $(DEBIAN_TEST_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian packages: $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else echo "make test: missing Debian packages ($$missing): apt-get install $$missing"; fi; fi
	@$(BIN)/python -m ecomlake.jvm.parts || [ "$$CI" != "true" ]

# ruff, then mypy over the files of [tool.mypy] in pyproject.toml (cached in .mypy_cache: ~30 s cold, under 1 s after).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

test: test-deps
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest tests --durations=25

# The unit tests that start nothing (no Kafka, Spark, Trino, Airflow or browser): ~40 s on 2 cores. A file joins the
# list when none of its tests needs a server; the one test that may fetch JVM parts with mvn stays out.
FAST_TESTS := tests/test_docs.py tests/test_architecture.py tests/test_settings.py tests/test_cli_errors.py \
	tests/test_jvm_parts.py tests/test_cluster_stack.py tests/test_gold.py tests/test_latency_probe.py \
	tests/test_lake_fs.py tests/test_metabase_provision.py tests/test_order_minutes.py tests/test_reference.py \
	tests/test_trino_register.py tests/test_bench_cpu.py
test-fast: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -m "not slow" $(FAST_TESTS) \
	  --deselect tests/test_jvm_parts.py::test_fetch_gives_every_required_jar_and_the_kafka_server_and_a_second_call_is_instant

# The fault suite: broker restarts and incarnations, concurrent runs (local lake and S3 leases), hostile duplicates,
# kill -9 of bronze and a replayed batch, a silver crash and rerun, a lake from before incarnations.
FAULT_TESTS := tests/test_broker_restart.py tests/test_locks.py tests/test_silver_duplicates.py tests/test_lake_upgrade.py \
	tests/test_bronze.py::test_exactly_once_across_sigkill_and_restart \
	tests/test_bronze.py::test_max_offsets_per_trigger_bounds_batches_and_a_replayed_batch_is_skipped \
	tests/test_silver_incremental.py::test_crash_mid_run_then_rerun_equals_clean_runs
test-faults: test-deps
	$(BIN)/python -m pytest $(FAULT_TESTS)

demo: $(STAMP)
	$(ECOM) demo

bench: $(STAMP)
	$(ECOM) bench

dashboard: $(STAMP)
	$(ECOM) dashboard

# SOAK_ARGS e.g. "--seconds 600 --rate 200"; KAFKA_BROKER=kafka also kills the (persistent) Apache Kafka broker.
SOAK_ARGS ?=
soak: $(STAMP)
	$(ECOM) soak $(SOAK_ARGS)

# The JVM parts (pinned in ecomlake/jvm/parts.py) into ECOMLAKE_JVM_CACHE; ONLY=spark|kafka|trino for one group.
# Needs mvn; nothing on the embedded stack (make demo) does.
ONLY ?=
jvm-parts: $(STAMP)
	$(BIN)/python -m ecomlake.jvm.parts $(if $(ONLY),--only $(ONLY))
jars: jvm-parts

broker-start: $(STAMP)
	$(ECOM) broker start
broker-stop: $(STAMP)
	$(ECOM) broker stop
broker-status: $(STAMP)
	$(ECOM) broker status

EVENTS   ?= 10000
SCENARIO ?= steady
SEED     ?= 7
generate: $(STAMP)
	$(ECOM) generate --events $(EVENTS) --scenario $(SCENARIO) --seed $(SEED)

bronze: $(STAMP)
	$(ECOM) bronze --available-now
silver: $(STAMP)
	$(ECOM) silver
gold: $(STAMP)
	$(ECOM) gold
dbt-test: $(STAMP)
	$(ECOM) gold --test-only
freshness: $(STAMP)
	$(ECOM) freshness
dbt-docs: $(STAMP)
	$(ECOM) gold --docs
maintain: $(STAMP)
	$(ECOM) maintain

# The core services (no profile) always start; PROFILES adds the rest (pipeline orchestration bi; tools is for
# `docker compose run`). E.g. `make up PROFILES=bi` for core + Metabase only. See docs/cluster-stack.md.
COMPOSE  ?= docker compose
PROFILES ?= pipeline orchestration bi
COMPOSE_PROFILES_FLAGS := $(foreach p,$(PROFILES),--profile $(p))
up:
	$(COMPOSE) $(COMPOSE_PROFILES_FLAGS) up -d --build
down:
	$(COMPOSE) $(COMPOSE_PROFILES_FLAGS) --profile tools down
ps:
	$(COMPOSE) $(COMPOSE_PROFILES_FLAGS) ps -a
logs:
	$(COMPOSE) $(COMPOSE_PROFILES_FLAGS) logs -f --tail=200

clean:
	rm -rf lakehouse .ecomlake spark-warehouse dbt/target dbt/logs
