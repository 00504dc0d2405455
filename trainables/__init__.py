"""The per-worker side of finetune-sweeps: config, data, models, the DDP fine-tuning loop."""

from trainables.config import EMBEDDED_MODEL, FinetuneConfig, load_config, parse_config
from trainables.errors import ConfigError, DataError, FinetuneError, ModelLoadError

__all__ = [
    "EMBEDDED_MODEL",
    "ConfigError",
    "DataError",
    "FinetuneConfig",
    "FinetuneError",
    "ModelLoadError",
    "load_config",
    "parse_config",
]
