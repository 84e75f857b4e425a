"""The project's Python packages as one zip, shipped to the executors of a Spark cluster (spark.submit.pyFiles).

Why: code the executors run comes from the project — above all the Python Kafka source (`KAFKA_SOURCE=python`),
whose read tasks run on executors; Spark pickles its reader class *by reference*, so an executor's Python must
import it by name. On local[*] and on this machine's test cluster the executors' Python is the driver's own
interpreter (PYSPARK_PYTHON, set by ecomlake.spark), where the project is installed; in the compose image the
project is pip-installed into the image every node runs. Shipping the zip as well (what `spark-submit --py-files`
does) makes executors independent of that: they import exactly the driver's code, even on a worker whose Python has
the dependencies but not the project, or an older copy of it (Python workers put the zip ahead of site-packages).

Driver side: the driver keeps importing its installed project (ecomlake.spark takes the zip back off its sys.path).
The source's planning calls (latestOffset, partitions) run in Python processes the driver's JVM starts on the
driver's machine with the same PYSPARK_PYTHON; pyspark 4.0.1 hands them the zip's name but looks for it in a
`streaming_job/` folder where it never is, so there the project must be importable by that interpreter, as it is
wherever the driver itself runs (tests/test_spark_cluster.py runs executors whose Python lacks the project).

Which packages: the top-level packages of the installed `ecomlake` distribution (its top_level.txt), found where
the driver imports them from; if the distribution is not installed, the packages beside `ecomlake` itself.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import zipfile
from importlib import metadata
from pathlib import Path

DISTRIBUTION = "ecomlake"
SKIP_DIRS = {"__pycache__"}
SKIP_SUFFIXES = (".pyc", ".pyo")


def package_dirs() -> list[Path]:
    """The directories of the project's top-level packages, as this interpreter imports them."""
    try:
        names = (metadata.distribution(DISTRIBUTION).read_text("top_level.txt") or "").split()
    except metadata.PackageNotFoundError:
        names = []
    dirs = []
    for name in names or _sibling_packages():
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations:
            dirs.append(Path(next(iter(spec.submodule_search_locations))).resolve())
    return dirs


def _sibling_packages() -> list[str]:
    root = Path(__file__).resolve().parent.parent
    return sorted(p.name for p in root.iterdir() if (p / "__init__.py").is_file())


def _files(dirs: list[Path]) -> list[tuple[Path, str]]:
    out = []
    for pkg in dirs:
        for dirpath, dirnames, filenames in os.walk(pkg):
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
            for name in sorted(filenames):
                if not name.endswith(SKIP_SUFFIXES):
                    path = Path(dirpath) / name
                    out.append((path, str(path.relative_to(pkg.parent))))
    return out


def project_zip(dest_dir: str | os.PathLike) -> Path:
    """Write (or reuse) `<dest_dir>/ecomlake-pyfiles-<content hash>.zip` with the project's packages."""
    files = _files(package_dirs())
    digest = hashlib.sha256()
    for path, arcname in files:
        digest.update(arcname.encode() + b"\0" + path.read_bytes() + b"\0")
    target = Path(dest_dir) / f"ecomlake-pyfiles-{digest.hexdigest()[:16]}.zip"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, arcname in files:
            zf.write(path, arcname)
    tmp.replace(target)
    return target
