"""Errors of the fine-tuning job: one type per failure family, each naming what is wrong."""


class FinetuneError(Exception):
    """Base of every error this package raises on bad input."""


class ConfigError(FinetuneError):
    """A config field has an unknown name or a value out of range."""


class DataError(FinetuneError):
    """A data file, column, split or label is missing or inconsistent."""


class ModelLoadError(FinetuneError):
    """The model or its tokenizer cannot be loaded from `model.name_or_path`."""
