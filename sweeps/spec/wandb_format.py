"""W&B sweep files, accepted unchanged: translated into this package's spec shape.

A W&B sweep file (`method`, `metric: {name, goal}`, `parameters`, `early_terminate`, `run_cap`)
names its parameters after the training program's arguments. Here a parameter is a dotted job
field (`optimizer.lr`), a nested `parameters:` block (`optimizer: {parameters: {lr: ...}}`), or
one of the common names in `ALIASES` (W&B tutorials' and HF `TrainingArguments`' names).
Constant parameters (`value:`) set the job, so a W&B file can name its model and data; a `job:`
section, which W&B itself would not read, may hold the rest. See the mapping table in docs/wandb.md.
"""

from __future__ import annotations

import difflib
import math
import re
from typing import Any, TypeGuard

from sweeps.errors import SpecError
from sweeps.spec.dotted import field_paths, set_dotted

#: Parameter names used by W&B examples and HF `TrainingArguments`, and the job field each sets.
ALIASES = {
    "learning_rate": "optimizer.lr",
    "lr": "optimizer.lr",
    "weight_decay": "optimizer.weight_decay",
    "optimizer": "optimizer.name",
    "momentum": "optimizer.momentum",
    "adam_beta1": "optimizer.beta1",
    "adam_beta2": "optimizer.beta2",
    "adam_epsilon": "optimizer.eps",
    "max_grad_norm": "optimizer.max_grad_norm",
    "batch_size": "training.batch_size",
    "per_device_train_batch_size": "training.batch_size",
    "epochs": "training.epochs",
    "num_train_epochs": "training.epochs",
    "max_steps": "training.max_steps",
    "gradient_accumulation_steps": "training.grad_accum_steps",
    "label_smoothing_factor": "training.label_smoothing",
    "seed": "training.seed",
    "warmup_ratio": "schedule.warmup_ratio",
    "warmup_steps": "schedule.warmup_steps",
    "lr_scheduler_type": "schedule.name",
    "dropout": "model.hidden_dropout",
    "hidden_dropout_prob": "model.hidden_dropout",
    "attention_probs_dropout_prob": "model.attention_dropout",
    "classifier_dropout": "model.classifier_dropout",
    "model_name_or_path": "model.name_or_path",
    "max_seq_length": "data.max_length",
    "max_length": "data.max_length",
    # peft's LoraConfig names, and the fine-tuning method as such scripts usually call it.
    "finetuning_method": "model.method",
    "lora_r": "model.lora.r",
    "lora_alpha": "model.lora.alpha",
    "lora_dropout": "model.lora.dropout",
    "target_modules": "model.lora.target_modules",
}
#: Metric names as HF `Trainer` logs them, and ours.
METRIC_ALIASES = {
    "eval_loss": "val_loss",
    "eval_accuracy": "val_accuracy",
    "eval_f1": "val_f1_macro",
    "eval/loss": "val_loss",
    "eval/accuracy": "val_accuracy",
    "eval/f1": "val_f1_macro",
    # Regression (run_glue on STS-B logs these).
    "eval_mse": "val_mse",
    "eval_rmse": "val_rmse",
    "eval_pearson": "val_pearson",
    "eval_spearmanr": "val_spearman",
    "eval_spearman": "val_spearman",
    "eval/pearson": "val_pearson",
    "eval/spearmanr": "val_spearman",
    # Multi-label.
    "eval_f1_micro": "val_f1_micro",
    "eval_f1_macro": "val_f1_macro",
    "eval_subset_accuracy": "val_subset_accuracy",
    # Token classification (run_ner logs seqeval's overall figures).
    "eval_overall_f1": "val_f1_entity",
    "eval_overall_precision": "val_precision_entity",
    "eval_overall_recall": "val_recall_entity",
    "eval_overall_accuracy": "val_token_accuracy",
    "eval/overall_f1": "val_f1_entity",
    "eval/overall_precision": "val_precision_entity",
    "eval/overall_recall": "val_recall_entity",
    "eval/overall_accuracy": "val_token_accuracy",
    "loss": "train_loss",
    "train/loss": "train_loss",
}
METHODS = {"grid": "grid", "random": "random", "bayes": "gp"}
TOP_KEYS = frozenset(
    {"program", "command", "method", "metric", "parameters", "early_terminate", "run_cap"}
    | {"name", "description", "project", "entity"}
    | {"job", "storage_path", "wandb"}  # ours: what W&B leaves to the training program
)
_RANGED = frozenset(
    {"int_uniform", "uniform", "q_uniform", "log_uniform", "q_log_uniform", "inv_log_uniform"}
    | {"log_uniform_values", "q_log_uniform_values", "inv_log_uniform_values"}
)
#: The keys of one W&B parameter (a nested block has `parameters` instead).
PARAM_KEYS = frozenset(
    {"value", "values", "distribution", "min", "max", "q", "mu", "sigma", "probabilities"}
)
# A parameter without a distribution is one of these shapes, which says its distribution; keys
# of two (`value` and `values`) contradict each other.
_SHAPES = (("value",), ("values",), ("min", "max"), ("mu", "sigma"))
_NUMERIC_KEYS = ("min", "max", "mu", "sigma", "q")
#: The keys of `metric` and of `early_terminate` that translate (W&B's `metric.target` and
#: `early_terminate.strict` have no equivalent here: refused, not silently dropped).
METRIC_KEYS = frozenset({"name", "goal"})
EARLY_TERMINATE_KEYS = frozenset({"type", "min_iter", "max_iter", "s", "eta"})

#: W&B's distribution names, each translated by `_distribution`.
DISTRIBUTIONS = (
    *("constant", "categorical", "int_uniform", "uniform", "q_uniform"),
    *("log_uniform", "q_log_uniform", "log_uniform_values", "q_log_uniform_values"),
    *("inv_log_uniform", "inv_log_uniform_values"),
    *("normal", "q_normal", "log_normal", "q_log_normal"),
)


def is_wandb_sweep(raw: dict[str, Any]) -> bool:
    """A W&B sweep file has top-level `parameters` and none of this package's `search`."""
    return "parameters" in raw and "search" not in raw


def from_wandb(raw: dict[str, Any], default_name: str) -> dict[str, Any]:
    """This package's spec mapping for a W&B sweep file.

    Raises:
        SpecError: naming the W&B key that cannot be translated.
    """
    return translate(raw, default_name)[0]


def translate(raw: dict[str, Any], default_name: str) -> tuple[dict[str, Any], dict[str, str]]:
    """`from_wandb`'s spec mapping, and the W&B key each of its dotted keys comes from
    (`{"search.space.optimizer.lr": "parameters.learning_rate", ...}`, see `explain`).

    Raises:
        SpecError: naming the W&B key that cannot be translated.
    """
    unknown = sorted(str(key) for key in set(raw) - TOP_KEYS)
    if unknown:
        raise SpecError(f"{unknown[0]}: not a W&B sweep key (known: {', '.join(sorted(TOP_KEYS))})")
    method = raw.get("method")
    if not isinstance(method, str) or method not in METHODS:
        raise SpecError(f"method: {method!r} is not a W&B method; use one of {list(METHODS)}")
    if not isinstance(raw.get("job") or {}, dict):
        raise SpecError(
            f"job: expected a mapping of job sections (model, data, ...), got {raw['job']!r}"
        )

    origins = {"search.method": "method"}
    job: dict[str, Any] = dict(raw.get("job") or {})
    space: dict[str, dict[str, Any]] = {}
    fields = field_paths()
    for where, path, param in _flat_parameters(raw.get("parameters"), "parameters", ""):
        target = _job_field(where, path, fields)
        translated = _distribution(where, param)
        if "value" in translated:
            job = set_dotted(job, target, translated["value"])
            # Checks of the job alone (preflight) name its fields without the `job.`.
            origins |= {f"job.{target}": where, target: where}
        else:
            space[target] = translated
            origins[f"search.space.{target}"] = where

    search: dict[str, Any] = {"method": METHODS[method], "space": space}
    search |= _metric(raw.get("metric"))
    origins |= {"search.metric": "metric.name", "search.mode": "metric.goal"}
    if "run_cap" in raw:
        search["num_samples"] = raw["run_cap"]
        origins["search.num_samples"] = "run_cap"
    spec: dict[str, Any] = {
        "name": _sweep_name(raw.get("name"), default_name),
        "job": job,
        "search": search,
    }
    for ours in ("storage_path", "wandb"):
        if ours in raw:
            spec[ours] = raw[ours]
    wandb = {key: raw[key] for key in ("project", "entity") if raw.get(key)}
    if wandb:
        spec["wandb"] = wandb
        origins |= {f"wandb.{key}": key for key in wandb}
    if raw.get("early_terminate"):
        spec["scheduler"] = _early_terminate(raw["early_terminate"])
        given = raw["early_terminate"]
        origins |= {
            "scheduler.grace_period": "early_terminate.min_iter"
            if "min_iter" in given
            else "early_terminate.max_iter",
            "scheduler.reduction_factor": "early_terminate.eta",
            "scheduler.max_t": "early_terminate.max_iter",
        }
    return spec, origins


def explain(message: str, origins: dict[str, str]) -> str:
    """`message`, an error about a translated W&B file, with the W&B key behind each key it
    names: the file's author wrote `parameters.learning_rate`, not `search.space.optimizer.lr`.

    Example:
        >>> message = explain("search.num_samples: 0 < 1", {"search.num_samples": "run_cap"})
        >>> message.splitlines()[-1]
        '  (in the W&B file: search.num_samples is run_cap)'
    """
    named = [
        f"{ours} is {theirs}"
        for ours, theirs in origins.items()
        if re.search(rf"(?<![\w.]){re.escape(ours)}(?!\w)", message)
    ]
    return message + (f"\n  (in the W&B file: {'; '.join(named)})" if named else "")


def _flat_parameters(tree: Any, where: str, prefix: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(W&B key path, dotted job path, parameter) for every leaf, nested blocks flattened."""
    if not isinstance(tree, dict) or not tree:
        raise SpecError(f"{where}: expected a mapping of parameter names to their values")
    leaves = []
    for name, param in tree.items():
        key = f"{where}.{name}"
        if not isinstance(param, dict):
            raise SpecError(f"{key}: expected a mapping such as {{values: [...]}} or {{value: x}}")
        if "parameters" in param:
            leaves += _flat_parameters(param["parameters"], f"{key}.parameters", f"{prefix}{name}.")
        else:
            leaves.append((key, f"{prefix}{name}", param))
    return leaves


def _job_field(where: str, path: str, fields: list[str]) -> str:
    if path in fields:
        return path
    if path in ALIASES:
        return ALIASES[path]
    close = difflib.get_close_matches(path, fields + list(ALIASES), n=3)
    raise SpecError(
        f"{where}: {path!r} is neither a job field nor a known alias"
        + (f"; did you mean {', '.join(close)}?" if close else "")
    )


def _distribution(where: str, param: dict[str, Any]) -> dict[str, Any]:
    """One W&B parameter as a `Param` mapping, or `{"value": x}` for a constant."""
    unknown = sorted(str(key) for key in set(param) - PARAM_KEYS)
    if unknown:
        raise SpecError(f"{where}.{unknown[0]}: not a W&B parameter key")
    if "probabilities" in param:
        raise SpecError(f"{where}.probabilities: weighted categories are not supported")
    for key in _NUMERIC_KEYS:
        if key in param and not _is_number(param[key]):
            raise SpecError(f"{where}.{key}: {param[key]!r} is not a number")
    values = param.get("values")
    if "values" in param and not (isinstance(values, list) and values):
        raise SpecError(f"{where}.values: expected a non-empty list of values, got {values!r}")
    dist = param.get("distribution")
    dist = _inferred(where, param) if dist is None else dist
    if not isinstance(dist, str) or dist not in DISTRIBUTIONS:
        raise SpecError(
            f"{where}.distribution: {dist!r} is not a W&B distribution; use one of "
            + ", ".join(DISTRIBUTIONS)
        )
    needs = {"constant": "value", "categorical": "values"}.get(dist)
    if needs and needs not in param:
        raise SpecError(f"{where}: distribution {dist} needs {needs}")
    low, high, q = param.get("min"), param.get("max"), param.get("q")
    lo, hi = (float(v) if _is_number(v) else math.nan for v in (low, high))
    mu, sigma = param.get("mu", 0.0), param.get("sigma", 1.0)
    if dist in _RANGED and (low is None or high is None):
        raise SpecError(f"{where}: distribution {dist} needs min and max")
    quantized = {"q": q if q is not None else 1} if dist.startswith("q_") else {}
    table: dict[str, Any] = {
        "constant": lambda: {"value": param.get("value")},
        "categorical": lambda: {"choice": list(param.get("values") or [])},
        "int_uniform": lambda: {"randint": [low, high]},
        "uniform": lambda: {"uniform": [low, high]},
        "q_uniform": lambda: {"uniform": [low, high]},
        "log_uniform": lambda: {"loguniform": [math.exp(lo), math.exp(hi)]},
        "q_log_uniform": lambda: {"loguniform": [math.exp(lo), math.exp(hi)]},
        "log_uniform_values": lambda: {"loguniform": [low, high]},
        "q_log_uniform_values": lambda: {"loguniform": [low, high]},
        # log(1/X) uniform on [min, max]: X is log-uniform on [e^-max, e^-min].
        "inv_log_uniform": lambda: {"loguniform": [math.exp(-hi), math.exp(-lo)]},
        # log(1/X) uniform on [log(1/max), log(1/min)]: X is log-uniform on [min, max].
        "inv_log_uniform_values": lambda: {"loguniform": [low, high]},
        "normal": lambda: {"normal": [mu, sigma]},
        "q_normal": lambda: {"normal": [mu, sigma]},
        "log_normal": lambda: {"lognormal": [mu, sigma]},
        "q_log_normal": lambda: {"lognormal": [mu, sigma]},
    }
    try:
        return table[dist]() | quantized
    except OverflowError:
        raise SpecError(
            f"{where}: e to the power of min {low!r} or max {high!r} overflows; {dist} takes "
            "natural-log bounds (log_uniform_values takes the values themselves)"
        ) from None


def _is_number(value: Any) -> TypeGuard[float]:
    """An int or a float, not a bool (which YAML's `true` is, and Python counts as an int)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _inferred(where: str, param: dict[str, Any]) -> str:
    """W&B's default distribution for a parameter that names none."""
    # Only here is a second shape ambiguous: a named distribution says which keys it reads.
    shapes = [keys for keys in _SHAPES if any(key in param for key in keys)]
    if len(shapes) > 1:
        given = [key for keys in shapes for key in keys if key in param]
        raise SpecError(
            f"{where}: {' and '.join(given)} contradict each other; give one of value, values, "
            "min and max, or mu and sigma (or name the distribution)"
        )
    if "value" in param:
        return "constant"
    if "values" in param:
        return "categorical"
    if "mu" in param or "sigma" in param:
        return "normal"
    if "min" in param and "max" in param:
        ints = all(isinstance(param[k], int) for k in ("min", "max"))
        return "int_uniform" if ints else "uniform"
    raise SpecError(f"{where}: give value, values, min and max, or a distribution")


def _metric(metric: Any) -> dict[str, Any]:
    if metric is None:
        return {}
    if not isinstance(metric, dict) or "name" not in metric:
        raise SpecError("metric: expected {name: ..., goal: maximize|minimize}")
    unknown = sorted(str(key) for key in set(metric) - METRIC_KEYS)
    if unknown:
        raise SpecError(f"metric.{unknown[0]}: not supported here; give name and goal only")
    if not isinstance(metric["name"], str):
        raise SpecError(f"metric.name: {metric['name']!r} is not a metric name, e.g. eval_accuracy")
    goal = metric.get("goal", "minimize")
    if goal not in ("maximize", "minimize"):
        raise SpecError(f"metric.goal: {goal!r}; use maximize or minimize")
    name = METRIC_ALIASES.get(metric["name"], metric["name"])
    return {"metric": name, "mode": "max" if goal == "maximize" else "min"}


def _early_terminate(config: Any) -> dict[str, Any]:
    """W&B's hyperband stopping as ASHA: both stop runs at milestones min_iter * eta^k,
    counted in logged values of the target metric (our evaluations), asynchronously."""
    if not isinstance(config, dict):
        raise SpecError(
            f"early_terminate: expected {{type: hyperband, min_iter: ...}}, got {config!r}"
        )
    if config.get("type") != "hyperband":
        raise SpecError("early_terminate.type: only hyperband exists in W&B sweeps")
    unknown = sorted(str(key) for key in set(config) - EARLY_TERMINATE_KEYS)
    if unknown:
        known = ", ".join(sorted(EARLY_TERMINATE_KEYS))
        raise SpecError(f"early_terminate.{unknown[0]}: not supported here (known: {known})")
    # Checked before the bracket arithmetic below, which a zero, negative or infinite eta, a
    # fractional s or a string would break.
    for key, least in (("min_iter", 1), ("max_iter", 1), ("s", 0)):
        value = config.get(key, least)
        if not (_is_number(value) and math.isfinite(value) and value == int(value) >= least):
            raise SpecError(f"early_terminate.{key}: {value!r}; give an integer >= {least}")
    eta = config.get("eta", 3)
    if not (_is_number(eta) and 1 < eta < math.inf):
        raise SpecError(f"early_terminate.eta: {eta!r}; give a number > 1 (W&B's default: 3)")
    if "min_iter" in config:
        grace = config["min_iter"]
    elif "max_iter" in config:
        grace = max(1, int(config["max_iter"] // eta ** config.get("s", 0)))
    else:
        raise SpecError("early_terminate: give min_iter, or max_iter and s")
    scheduler = {"name": "asha", "grace_period": grace, "reduction_factor": eta}
    if "max_iter" in config:
        scheduler["max_t"] = config["max_iter"]
    return scheduler


def _sweep_name(name: Any, default: str) -> str:
    """W&B names are free text; ours name a folder."""
    text = str(name) if name else default
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or default
