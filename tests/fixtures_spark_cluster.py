"""A Spark standalone cluster for the test session, as docker-compose.yml runs one (ecomlake.jvm.spark_cluster):
a master and one worker (1 core, 1g for executors) from pyspark's own distribution on 127.0.0.1, configured with
the compose image's docker/spark/spark-defaults.conf. Import the fixture where it is used:

    from fixtures_spark_cluster import spark_cluster  # noqa: F401
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
IMAGE_SPARK_DEFAULTS = REPO / "docker" / "spark" / "spark-defaults.conf"


@dataclass(frozen=True)
class SparkCluster:
    master_url: str
    conf_dir: Path  # SPARK_CONF_DIR of the daemons, and of the drivers the tests start (the image's defaults)
    work_dir: Path  # <work_dir>/<app id>/<executor id>/{stderr,stdout,<fetched files>}
    started_in_s: float
    state: object  # ecomlake.jvm.spark_cluster.ClusterState

    def applications(self) -> list[dict]:
        """Every application the master knows (active and completed), as its /json lists them."""
        from ecomlake.jvm.spark_cluster import master_json

        info = master_json(self.state)
        return info.get("activeapps", []) + info.get("completedapps", [])

    def driver_env(self) -> dict[str, str]:
        """What a client-mode driver needs to run on this cluster, within the tests' memory budget."""
        return {
            "SPARK_MASTER": self.master_url,
            "SPARK_CONF_DIR": str(self.conf_dir),
            "SPARK_DRIVER_MEMORY": "1g",
            "SPARK_SHUFFLE_PARTITIONS": "2",
        }


@pytest.fixture(scope="session")
def spark_cluster(tmp_path_factory):
    from ecomlake.errors import EcomlakeError
    from ecomlake.java import find_java
    from ecomlake.jvm import spark_cluster as cluster

    try:
        find_java()
    except EcomlakeError as err:
        pytest.skip(f"no Spark cluster: {err}")
    run_dir = tmp_path_factory.mktemp("spark-cluster")
    conf_dir = run_dir / "conf"
    conf_dir.mkdir()
    shutil.copy(IMAGE_SPARK_DEFAULTS, conf_dir / "spark-defaults.conf")
    began = time.monotonic()
    master_url = cluster.start(run_dir, cores=1, memory="1g", conf_dir=conf_dir)
    try:
        state = cluster.status(run_dir)
        assert state is not None and state.master_url == master_url
        yield SparkCluster(master_url, conf_dir, Path(state.work_dir), time.monotonic() - began, state)
    finally:
        cluster.stop(run_dir)
