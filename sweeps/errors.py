"""Errors of the sweep side; all are `trainables.FinetuneError`s, so one except catches both."""

from trainables.errors import ConfigError, FinetuneError


class SpecError(ConfigError):
    """A sweep spec has an unknown key, a bad distribution, or asks for the impossible."""


class PromotionError(FinetuneError):
    """The best checkpoint cannot be promoted or a promoted model does not verify."""


class StorageError(FinetuneError):
    """A storage location cannot be written: no bucket, no credentials, no route, no permission."""
