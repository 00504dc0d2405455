"""Errors of the sweep side; all are `trainables.FinetuneError`s, so one except catches both."""

from trainables.errors import ConfigError


class SpecError(ConfigError):
    """A sweep spec has an unknown key, a bad distribution, or asks for the impossible."""
