"""Errors reach the user as one line naming the cause; `ecomlake --debug` shows the full trace."""

from __future__ import annotations

import pytest

from pipeline import cli


def explode(argv):
    def inner():
        raise RuntimeError("the warehouse melted\nsecond line of detail")

    inner()


@pytest.fixture
def boom(monkeypatch):
    monkeypatch.setitem(cli.COMMANDS, "boom", ("test_cli_errors:explode", "raises"))
    monkeypatch.delenv("ECOMLAKE_DEBUG", raising=False)


def test_an_unexpected_error_is_one_line_with_a_hint(boom, capsys):
    assert cli.main(["boom"]) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "ecomlake boom: error: RuntimeError: the warehouse melted (`ecomlake --debug boom ...` shows the full trace)"]


def test_debug_shows_the_full_trace(boom, monkeypatch):
    monkeypatch.setenv("ECOMLAKE_DEBUG", "")
    with pytest.raises(RuntimeError, match="the warehouse melted"):
        cli.main(["--debug", "boom"])


def test_a_py4j_error_shows_the_java_exception_line():
    err = RuntimeError(
        "An error occurred while calling o51.load.\n: java.io.FileNotFoundException: /x (Is a directory)\n\tat ...")
    assert cli._one_line(err) == "RuntimeError: java.io.FileNotFoundException: /x (Is a directory)"
