"""The sweep spec: one YAML file describing a whole sweep, typed and validated.

    name: laptop
    storage_path: ./results/sweeps
    wandb:      {project: finetune-sweeps, tags: [laptop]}              # optional
    job:        {model: ..., data: ..., training: ..., scaling: ...}   # a fine-tuning job
    search:     {method: tpe, metric: val_accuracy, mode: max, num_samples: 8,
                 space: {optimizer.lr: {loguniform: [1.0e-5, 3.0e-4]}}}
    scheduler:  {name: asha, grace_period: 1, reduction_factor: 3}
    promote:    {to: s3://models/sweeps, when: end}                     # optional

`job` is a `trainables.FinetuneConfig` (less `name` and `storage_path`, which the sweep sets per
trial); every key of `search.space` is a dotted path into it.
"""

from __future__ import annotations

import difflib
import hashlib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializationInfo,
    ValidationError,
    field_serializer,
    model_validator,
)

from sweeps.errors import SpecError
from sweeps.spec.dotted import SWEEP_SET_FIELDS, apply_overrides, field_paths
from sweeps.spec.jobs import apply_params
from sweeps.spec.space import Param, grid_size
from sweeps.spec.wandb_format import TOP_KEYS, explain, is_wandb_sweep, translate
from trainables.config import FinetuneConfig
from trainables.config_files import format_validation_error, read_yaml_mapping
from trainables.errors import ConfigError
from trainables.objective import Objective
from trainables.reporting import natural_mode, target_metric, task_metrics, validation_metrics

#: The names the spec accepts; each is a registered factory (`sweeps.running.search`,
#: `sweeps.running.schedulers`: tests/sweeps/running/test_contract.py checks the two agree).
SearchMethod = Literal["grid", "random", "tpe", "gp"]
SchedulerName = Literal["fifo", "asha", "hyperband", "median", "pbt", "pb2"]
#: Schedulers that evolve a population (exploit a checkpoint, explore its parameters).
POPULATION_SCHEDULERS = ("pbt", "pb2")
# PBT draws its whole population up front: only methods that need no feedback can do that.
POPULATION_METHODS = ("random", "grid")
#: Metrics a search or a promotion may select by, over every task (test metrics never are);
#: a job selects among its own task's (`trainables.reporting.TASK_METRICS`).
SELECTABLE_METRICS = validation_metrics()


def _check_direction(field: str, metric: str, mode: str | None) -> None:
    """Raises when `mode` contradicts `metric`'s natural direction (max of a loss...)."""
    natural = natural_mode(metric)
    if mode is not None and mode != natural:
        raise ValueError(
            f"{field}: mode {mode!r} contradicts {metric!r}, which is better "
            f"{'lower' if natural == 'min' else 'higher'} (mode {natural!r}); drop the mode or "
            f"give {natural!r}"
        )


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ConfirmSpec(_Section):
    """The confirmation stage: after the search, retrain its `top_k` best configurations with
    `seeds` new seeds each (the full job, no early stopping); the winner is the configuration
    with the best mean target metric, and promotion takes the winner's best seed.

    A search's best trial is partly seed luck (Dodge et al. 2020: the seed alone moves BERT on
    RTE by 7 points); this trades `top_k * seeds` more trials for a choice that is not.
    """

    top_k: int = Field(default=3, ge=1, le=100)
    seeds: int = Field(default=3, ge=2, le=100)


class SearchSpec(_Section):
    """What to try: method, target metric, space and budget; optionally a confirmation stage.

    `metric` is one the job's task reports, by default the task's usual target
    (`trainables.reporting.TARGET_METRICS`: `val_accuracy` for text and image, `val_spearman`
    for regression, `val_f1_macro` for multi-label, `val_f1_entity` for NER, `val_loss` for
    causal LM); `mode` defaults to its natural direction (`min` for losses and errors, `max`
    otherwise), and one that contradicts it is an error.
    """

    method: SearchMethod = "tpe"
    metric: str = "val_accuracy"
    mode: Literal["min", "max"] = "max"
    space: dict[str, Param] = Field(default_factory=dict)
    num_samples: int | None = Field(default=None, ge=1, le=100_000)
    max_concurrent_trials: int | None = Field(default=None, ge=1)
    time_budget_s: float | None = Field(default=None, gt=0)
    gpu_hours_budget: float | None = Field(default=None, gt=0)
    seed: int = 0
    confirm: ConfirmSpec | None = None

    @model_validator(mode="before")
    @classmethod
    def _natural_mode(cls, raw: Any) -> Any:
        if not isinstance(raw, dict) or raw.get("mode") is not None:
            return raw
        metric = raw.get("metric", cls.model_fields["metric"].default)
        return {**raw, "mode": natural_mode(metric)} if isinstance(metric, str) else raw

    @model_validator(mode="after")
    def _consistent(self) -> SearchSpec:
        if self.metric not in SELECTABLE_METRICS:
            raise ValueError(
                f"search.metric: {self.metric!r} is not reported by the trainable (test "
                f"metrics are never used for selection); choose one of {list(SELECTABLE_METRICS)}"
            )
        _check_direction("search.mode", self.metric, self.mode)
        if self.method == "grid":
            continuous = [k for k, p in self.space.items() if not _enumerable(p)]
            if continuous:
                raise ValueError(
                    f"search.method: grid needs finite values; {continuous} are continuous ranges "
                    f"(use choice/grid values, or method random/tpe/gp)"
                )
        elif any(p.grid is not None for p in self.space.values()):
            raise ValueError(f"search.space: grid values need method: grid, not {self.method!r}")
        return self


def _enumerable(param: Param) -> bool:
    try:
        param.values()
    except ValueError:
        return False
    return True


class SchedulerSpec(_Section):
    """When to stop trials early, or (PBT) how to evolve them. Units are evaluations (reports).

    Attributes:
        name: `fifo` runs every trial to its end; `asha`, `hyperband` and `median` stop weak
            trials early; `pbt` (population-based training) replaces the weakest trials by
            copies of the strongest, with perturbed hyperparameters, as they train; `pb2`
            (population-based bandits) does the same but picks the copies' new values of the
            space's ranges by a Gaussian-process bandit over the population's results.
        grace_period: ASHA/median: evaluations before a trial may be stopped.
        reduction_factor: ASHA/hyperband: eta, the fraction kept at each rung is 1/eta.
        max_t: ASHA/hyperband: the horizon in evaluations (default: the longest trial's).
        perturbation_interval: PBT: evaluations between two exploit/explore decisions.
        quantile: PBT: the bottom fraction of trials that copy one of the top fraction.
        resample_probability: PBT: chance that an explored value is drawn afresh from the
            space instead of perturbed (x0.8 / x1.2 for ranges, a neighbour for choices).
    """

    name: SchedulerName = "fifo"
    grace_period: int = Field(default=1, ge=1)
    reduction_factor: float = Field(default=3, gt=1)
    max_t: int | None = Field(default=None, ge=1)
    perturbation_interval: int = Field(default=2, ge=1)
    quantile: float = Field(default=0.25, gt=0.0, le=0.5)
    resample_probability: float = Field(default=0.25, ge=0.0, le=1.0)

    @property
    def evolves(self) -> bool:
        """Whether this scheduler evolves a population (PBT, PB2): trials hand Tune their
        checkpoints and continue from each other's."""
        return self.name in POPULATION_SCHEDULERS


class WandbSpec(_Section):
    """Where trials stream in W&B. No `mode`: `WANDB_MODE`, else online with an API key and
    offline without one."""

    project: str = "finetune-sweeps"
    entity: str | None = None
    group: str | None = None
    tags: tuple[str, ...] = ()
    mode: Literal["online", "offline", "disabled"] | None = None
    dir: str | None = None
    init_timeout_s: float = Field(default=30.0, gt=0)
    finish_timeout_s: float = Field(default=120.0, gt=0)


class PromoteSpec(_Section):
    """Where the best checkpoint goes (`DEST/<sweep>/v<N>/`, see `sweeps.store.model_versions`).

    `metric`/`mode` default to the search's; `when: improvement` promotes whenever a trial
    reports a better checkpoint, `end` once when the sweep ends.
    """

    to: str
    metric: str | None = None
    mode: Literal["max", "min"] | None = None
    when: Literal["end", "improvement"] = "end"
    wandb_artifact: bool = False

    @model_validator(mode="after")
    def _known_metric(self) -> PromoteSpec:
        if self.metric is not None and self.metric not in SELECTABLE_METRICS:
            raise ValueError(
                f"promote.metric: {self.metric!r} is not a metric to select by; one of "
                + ", ".join(sorted(SELECTABLE_METRICS))
            )
        if self.metric is not None:
            _check_direction("promote.mode", self.metric, self.mode)
        return self


class SweepSpec(_Section):
    """A whole sweep. See the module docstring for the YAML shape."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    storage_path: str = "./results/sweeps"
    job: FinetuneConfig
    search: SearchSpec = SearchSpec()
    scheduler: SchedulerSpec = SchedulerSpec()
    wandb: WandbSpec = WandbSpec()
    promote: PromoteSpec | None = None
    # Custom Ray resources each trial's driver asks for (a resource only on-demand nodes define).
    driver_resources: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _sweep_sets_name_and_storage(cls, raw: Any) -> Any:
        job = raw.get("job") if isinstance(raw, dict) else None
        if not isinstance(job, dict):
            return raw
        for reserved in SWEEP_SET_FIELDS:
            if reserved in job:
                raise ValueError(f"job.{reserved} is set by the sweep; remove it from job")
        return _monitor_the_target(raw)

    @field_serializer("job")
    def _job_without_what_the_sweep_sets(
        self, job: FinetuneConfig, info: SerializationInfo
    ) -> dict[str, Any]:
        # A dumped spec validates again: the per-trial fields are not part of it.
        return job.model_dump(
            mode=info.mode,
            exclude=set(SWEEP_SET_FIELDS),
            exclude_none=info.exclude_none,
            exclude_defaults=info.exclude_defaults,
        )

    @model_validator(mode="after")
    def _population_for_pbt(self) -> SweepSpec:
        if self.scheduler.name not in POPULATION_SCHEDULERS:
            return self
        if self.scheduler.name == "pb2" and not any(
            p.kind in ("uniform", "loguniform") and p.when is None
            for p in self.search.space.values()
        ):
            raise ValueError(
                "search.space: PB2 explores only ranges; give it at least one unconditional "
                "uniform or loguniform parameter"
            )
        if self.search.method not in POPULATION_METHODS:
            raise ValueError(
                f"search.method: {self.search.method!r} cannot seed PBT, which draws its whole "
                f"population before any trial reports; use one of {list(POPULATION_METHODS)}"
            )
        if not any(p.when is None for p in self.search.space.values()):
            raise ValueError("search.space: PBT needs at least one unconditional parameter")
        if self.trials < 2:
            raise ValueError("search.num_samples: PBT needs a population of at least 2 trials")
        if self.search.confirm is not None:
            raise ValueError(
                "search.confirm: PBT's result is a hyperparameter schedule grown from one "
                "population, not a configuration to retrain from scratch; remove confirm or "
                "use another scheduler"
            )
        return self

    @model_validator(mode="after")
    def _metrics_of_the_task(self) -> SweepSpec:
        selected = [("search.metric", self.search.metric)]
        if self.promote and self.promote.metric:
            selected.append(("promote.metric", self.promote.metric))
        for field, metric in selected:
            problem = self.job.metric_problem(metric)
            if problem:
                raise ValueError(f"{field}: {problem}")
        if self.promote and self.promote.metric is None and self.promote.mode is not None:
            _check_direction("promote.mode", self.search.metric, self.promote.mode)
        return self

    @model_validator(mode="after")
    def _job_and_space_fit(self) -> SweepSpec:
        if self.search.gpu_hours_budget and not (
            self.job.scaling.gpus_per_worker or "scaling.gpus_per_worker" in self.search.space
        ):
            raise ValueError(
                "search.gpu_hours_budget: the job requests no GPUs (job.scaling.gpus_per_worker)"
            )
        fields = field_paths()
        for key, param in self.search.space.items():
            if key not in fields:
                close = difflib.get_close_matches(key, fields, n=3)
                raise ValueError(
                    f"search.space.{key}: not a field of the job"
                    + (f"; did you mean {', '.join(close)}?" if close else "")
                )
            for cond in param.when or {}:
                if cond not in fields:
                    raise ValueError(f"search.space.{key}.when: {cond!r} is not a field of the job")
            for value in param.bounds_samples():
                apply_params(self.job, {key: value}, source=f"search.space.{key} (value {value!r})")
        return self

    @property
    def objective(self) -> Objective:
        """The search's target metric and direction."""
        return Objective(self.search.metric, self.search.mode)

    @property
    def promotion_objective(self) -> Objective:
        """What promotion ranks checkpoints by: `promote.metric`/`mode`, else the search's."""
        metric = self.promote.metric if self.promote else None
        mode = self.promote.mode if self.promote else None
        return Objective(metric or self.search.metric, mode or self.search.mode)

    @property
    def grid_points(self) -> int:
        return grid_size(self.search.space)

    @property
    def trials(self) -> int:
        """Trials to run: the whole grid (or `num_samples` of its points), else num_samples
        (8 when not given)."""
        if self.search.method == "grid":
            return min(self.grid_points, self.search.num_samples or self.grid_points)
        return self.search.num_samples or 8

    def sha256(self) -> str:
        """SHA-256 of the sweep as it runs (where it logs and promotes left out)."""
        what_runs = {k: v for k, v in self.as_mapping().items() if k not in ("wandb", "promote")}
        return hashlib.sha256(yaml.safe_dump(what_runs, sort_keys=True).encode()).hexdigest()

    def as_mapping(self) -> dict[str, Any]:
        """The spec as YAML-ready data that `parse_spec` reads back to an equal spec."""
        return self.model_dump(mode="json", exclude_none=True)


def parse_spec(raw: dict[str, Any], source: str = "spec") -> SweepSpec:
    """Validates a mapping into a `SweepSpec`, W&B sweep format included.

    Raises:
        SpecError: naming every offending key.
    """
    origins: dict[str, str] = {}
    if is_wandb_sweep(raw):
        raw, origins = translate(raw, default_name=Path(source).stem)
    return _validated(raw, source, origins)


#: Top-level keys of a W&B sweep file that a spec of this package never has.
_WANDB_ONLY_KEYS = TOP_KEYS - set(SweepSpec.model_fields) - {"description", "project", "entity"}


def _validated(raw: dict[str, Any], source: str, origins: dict[str, str]) -> SweepSpec:
    """`raw` as a `SweepSpec`; errors name the W&B keys behind translated ones (`origins`)."""
    try:
        return SweepSpec.model_validate(raw)
    except ValidationError as exc:
        message = format_validation_error(exc, source, root=SweepSpec)
    except ConfigError as exc:
        message = f"{source}: {exc}"
    wandb_keys = sorted(str(key) for key in raw if key in _WANDB_ONLY_KEYS)
    if wandb_keys and not {"search", "parameters", "job"} & set(raw):
        # Without `parameters` a W&B file reads as this package's format, and every W&B key
        # is "unknown": say what is really missing. (A file with a job is this package's.)
        message += (
            f"\n  parameters: missing; with {', '.join(wandb_keys)} this is a W&B sweep file, "
            "which needs parameters (or write this package's format: name, job, search)"
        )
    raise SpecError(explain(message, origins))


def _monitor_the_target(raw: dict[str, Any]) -> dict[str, Any]:
    """Fills what the job's task decides: the search's target metric when the spec names none
    (the task's usual one), and, unless the job says otherwise, the metric trials keep (and
    early-stop on): the sweep's target, so checkpoint retention never deletes the checkpoint
    that makes a trial the best."""
    job = raw.get("job")
    if not isinstance(job, dict):
        return raw
    try:  # the task the job will have (inferred when unset), to know what it reports
        task = FinetuneConfig._infer_task(job).get("task", "text")  # type: ignore[operator]
    except Exception:  # an invalid job: reported by its own validation
        return raw
    search = raw.get("search", {})
    if isinstance(search, dict) and search.get("metric") is None and isinstance(task, str):
        search = {**search, "metric": target_metric(task)}
        raw = {**raw, "search": search}
    metric = search.get("metric") if isinstance(search, dict) else None
    if metric not in task_metrics(task):
        return raw
    training = job.get("training") or {}
    if not isinstance(training, dict) or "monitor" in training:
        return raw
    return {**raw, "job": {**job, "training": {**training, "monitor": metric}}}


def load_spec(path: str | Path, overrides: list[str] | None = None) -> SweepSpec:
    """Reads a sweep YAML, applies `--set` overrides and validates it.

    Raises:
        SpecError: naming the offending key (or, for a file that is not YAML, the line).
    """
    return load_spec_with_origins(path, overrides)[0]


def load_spec_with_origins(
    path: str | Path, overrides: list[str] | None = None
) -> tuple[SweepSpec, dict[str, str]]:
    """`load_spec`, and for a W&B file the W&B key behind each translated key (empty for a
    spec of this package's format): pass it to `wandb_format.explain` with a later error about
    the spec, such as a preflight error naming `model.name_or_path`.

    Raises:
        SpecError: naming the offending key (or, for a file that is not YAML, the line).
    """
    raw = read_yaml_mapping(path, "spec", SpecError)
    if not is_wandb_sweep(raw):
        return parse_spec(apply_overrides(raw, overrides or []), source=str(path)), {}
    # Overrides name this package's keys, so they apply after the translation.
    raw, origins = translate(raw, default_name=Path(path).stem)
    return _validated(apply_overrides(raw, overrides or []), str(path), origins), origins
