"""Errors a user can act on: the CLI prints them as one line, never as a stack trace."""


class EcomlakeError(Exception):
    """A problem with configuration, input or environment, explained in one line."""

    exit_code = 2


class ConfigError(EcomlakeError):
    """A setting (environment variable or argument) has a value that is not allowed."""
