"""The README and docs/ stay true to the repo: links resolve, named commands exist, the configuration table matches
what ecomlake/settings.py declares and reads. Fast and server-free, so a doc that drifts fails `make test-fast`."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
import unicodedata
from collections.abc import Mapping
from pathlib import Path

import pytest

import ecomlake.settings
from ecomlake.settings import Var
from pipeline.cli import COMMANDS

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

FENCE = re.compile(r"^```.*?^```[ \t]*$", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]+`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$", re.M)
MAKE = re.compile(r"(?<![\w-])make[ \t]+([a-z][\w-]*)")
ECOMLAKE = re.compile(r"(?<![\w.-])ecomlake(?=[ \t]+(?:--debug[ \t]+)?([a-z][\w-]*))")
VARIABLE = re.compile(r"`([A-Z][A-Z0-9_]+)`")


def rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def prose(text: str) -> str:
    """The text without code: a link or heading inside a code block is not one."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def code(text: str) -> list[str]:
    """Fenced blocks and inline code spans: where the docs name commands to type."""
    blocks = FENCE.findall(text)
    return blocks + INLINE_CODE.findall(FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's heading anchor: the rendered text lowercased, punctuation dropped, each space a hyphen."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").strip().lower()
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return kept.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for _, heading in HEADING.findall(FENCE.sub("", path.read_text())):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def links(path: Path) -> list[str]:
    return [t for t in LINK.findall(prose(path.read_text())) if not re.match(r"[a-z]+:", t)]


@pytest.mark.parametrize("doc", DOCS, ids=rel)
def test_every_relative_link_points_at_a_file_and_heading(doc):
    broken = []
    for target in links(doc):
        file_part, _, anchor = target.partition("#")
        dest = (doc.parent / file_part).resolve() if file_part else doc
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {rel(dest)}")
    assert not broken, f"{rel(doc)}: " + "; ".join(broken)


def test_the_readme_links_every_docs_page():
    linked = {(REPO / t.partition("#")[0]).resolve() for t in links(REPO / "README.md")}
    assert set(DOCS[1:]) <= linked, sorted(rel(p) for p in set(DOCS[1:]) - linked)


def make_targets() -> set[str]:
    rule = re.compile(r"^([A-Za-z][\w-]*(?:[ \t]+[A-Za-z][\w-]*)*)[ \t]*:(?!=)", re.M)
    return {name for names in rule.findall((REPO / "Makefile").read_text()) for name in names.split()}


def test_every_make_target_the_docs_name_is_in_the_makefile():
    targets = make_targets()
    assert {"demo", "test", "test-fast"} <= targets
    unknown = sorted({(rel(doc), t) for doc in DOCS for span in code(doc.read_text()) for t in MAKE.findall(span)
                      if t not in targets})
    assert not unknown, f"make targets named but not in the Makefile: {unknown}"


def test_every_ecomlake_command_the_docs_name_is_a_subcommand():
    named = {(rel(doc), c) for doc in DOCS for span in code(doc.read_text()) for c in ECOMLAKE.findall(span)}
    assert len(named) > 10
    unknown = sorted((doc, c) for doc, c in named if c not in COMMANDS and c != "ecomlake")
    assert not unknown, f"ecomlake commands named but not in pipeline/cli.py: {unknown}"


class Recording(Mapping):
    """An empty environment that remembers every name asked of it, so each reader falls back to its default."""

    def __init__(self) -> None:
        self.asked: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.asked.add(name)
        raise KeyError(name)

    def get(self, name, default=None):
        self.asked.add(name)
        return default

    def __contains__(self, name) -> bool:
        self.asked.add(name)
        return False

    def __iter__(self):
        return iter(())

    def __len__(self) -> int:
        return 0


def declared() -> dict[str, Var]:
    """Every variable ecomlake/settings.py declares: the fields of its config classes and its module-level `Var`s."""
    found = [obj for obj in vars(ecomlake.settings).values() if isinstance(obj, Var)]
    found += [f.metadata["var"] for cls in config_classes() for f in dataclasses.fields(cls)]
    return {var.name: var for var in found}


def config_classes() -> list[type]:
    return [obj for obj in vars(ecomlake.settings).values()
            if inspect.isclass(obj) and dataclasses.is_dataclass(obj) and hasattr(obj, "from_env")]


def settings_variables() -> set[str]:
    """Every variable the settings module reads: each `from_env` and each reader taking `env` (and no variable name),
    called on an empty environment."""
    env = Recording()
    for cls in config_classes():
        cls.from_env(env)
    for obj in vars(ecomlake.settings).values():
        if inspect.isfunction(obj) and obj.__module__ == ecomlake.settings.__name__:
            params = inspect.signature(obj).parameters
            if "env" in params and "name" not in params:
                obj(env=env)
    return env.asked


def test_the_readers_find_every_variable_named_in_settings():
    """A cross-check of settings_variables(): no variable name passed in settings.py escapes the readers it calls."""
    source = ast.parse(Path(ecomlake.settings.__file__).read_text())
    literal = {arg.value for node in ast.walk(source) if isinstance(node, ast.Call) for arg in node.args
               if isinstance(arg, ast.Constant) and isinstance(arg.value, str)
               and re.fullmatch(r"[A-Z][A-Z0-9]*_[A-Z0-9_]+", arg.value)}
    assert literal and literal <= settings_variables(), sorted(literal - settings_variables())


def test_the_readers_read_exactly_the_declared_variables():
    """No reader goes around a declaration, and no declaration is left unread."""
    read, names = settings_variables(), set(declared())
    assert read == names, f"read but not declared: {sorted(read - names)}; declared but unread: {sorted(names - read)}"


def configuration_table() -> dict[str, str]:
    """docs/configuration.md's variables, each with its default as its row gives it (`a`, `b` for a row of two)."""
    table = {}
    for line in (REPO / "docs" / "configuration.md").read_text().splitlines():
        if line.startswith("| `"):
            names_cell, default_cell = (cell.strip() for cell in line.split("|")[1:3])
            names = VARIABLE.findall(names_cell)
            one_each = len(names) == 1 or default_cell == "–"
            defaults = [default_cell] * len(names) if one_each else default_cell.split(", ")
            assert len(defaults) == len(names), f"one default per variable: {line}"
            table.update(zip(names, defaults))
    return table


def documented_default(var: Var) -> str:
    return var.doc or (f"`{var.default}`" if var.default else "–")


def test_the_configuration_table_gives_every_declared_variable_with_its_default():
    documented, names = configuration_table(), declared()
    assert documented.keys() == names.keys(), (
        f"declared but not in docs/configuration.md: {sorted(names.keys() - documented.keys())}; "
        f"in the table but not declared: {sorted(documented.keys() - names.keys())}")
    wrong = {name: (documented[name], documented_default(var)) for name, var in names.items()
             if documented[name] != documented_default(var)}
    assert not wrong, f"docs/configuration.md default vs the declaration: {wrong}"


def variables_read_outside_settings() -> set[str]:
    """What the cluster stack reads: docker-compose.yml's ${VAR} and the Airflow DAGs' os.environ."""
    compose = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", (REPO / "docker-compose.yml").read_text()))
    dags = {name for path in (REPO / "airflow").rglob("*.py")
            for name in re.findall(r"environ(?:\.get)?[\[(]\s*\"([A-Z][A-Z0-9_]*)\"", path.read_text())}
    return compose | dags


def test_env_example_names_only_variables_that_are_read():
    named = set(re.findall(r"^#?[ \t]*([A-Z][A-Z0-9_]*)=", (REPO / ".env.example").read_text(), re.M))
    assert len(named) > 20
    unknown = named - declared().keys() - variables_read_outside_settings()
    assert not unknown, f".env.example names variables nothing reads: {sorted(unknown)}"


def test_env_example_sets_the_declared_variables_to_their_defaults():
    """Copying .env.example to .env changes no setting: a line it sets is the default (a commented one, `# NAME=...`,
    is an example)."""
    names = declared()
    lines = re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", (REPO / ".env.example").read_text(), re.M)
    checked = {name: value for name, value in lines if name in names}
    assert len(checked) > 20
    wrong = {name: value for name, value in checked.items() if names[name].read({name: value}) != names[name].read({})}
    assert not wrong, f".env.example sets these to other than their defaults: {wrong}"
