"""Checks a job's inputs on the driver, before any Ray worker starts.

Everything that a worker would otherwise discover minutes later (a missing file or column, an
unseen validation label, an empty split, a model or tokenizer that will not load, more layers
to freeze than the model has, resources the cluster cannot give) fails here with a message
naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from trainables.config import FinetuneConfig, ScalingConfig
from trainables.errors import ConfigError, ModelLoadError
from trainables.models import load_model_config, load_tokenizer


@dataclass(frozen=True)
class JobSummary:
    """What preflight learnt: label names and split sizes."""

    label_names: tuple[str, ...]
    split_sizes: dict[str, int]


def check_inputs(cfg: FinetuneConfig) -> JobSummary:
    """Reads the data and model metadata the job needs and raises on the first problem.

    Raises:
        DataError, ModelLoadError: naming the field, file or column at fault.
    """
    from trainables.tasks import read_dataset

    dataset = read_dataset(cfg)  # the task's labels checked: file, row and field of a bad one
    if cfg.task == "image":
        from trainables.image_files import open_image
        from trainables.tasks.vision_models import check_vision_model

        check_vision_model(cfg.model, len(dataset.label_names))
        field = f"data.{cfg.data.image_column or 'image'}"
        for name, split in dataset.splits.items():
            for row, ref in enumerate(split.inputs):
                open_image(ref, f"{field} ({name} split, row {row})")
        return JobSummary(
            label_names=dataset.label_names,
            split_sizes={name: len(split) for name, split in dataset.splits.items()},
        )
    load_tokenizer(cfg.model.name_or_path)
    model_config = load_model_config(cfg.model, dataset.label_names)
    layers = getattr(model_config, "num_hidden_layers", None)
    if cfg.model.freeze == "layers" and layers is not None and cfg.model.freeze_layers > layers:
        raise ModelLoadError(
            f"model.freeze_layers: {cfg.model.freeze_layers} is more than the {layers} layers "
            f"of {cfg.model.name_or_path!r}"
        )
    return JobSummary(
        label_names=dataset.label_names,
        split_sizes={name: len(split) for name, split in dataset.splits.items()},
    )


def check_resources(
    scaling: ScalingConfig, nodes: Sequence[Mapping[str, float]], field: str = "scaling"
) -> None:
    """Fails if the workers of one job can never be placed on these nodes' total resources.

    Each worker needs `cpus_per_worker` CPUs and `gpus_per_worker` GPUs on a single node;
    workers are packed greedily, the same way a PACK placement group would try.

    Raises:
        ConfigError: naming the resource, what one job asks for and what the cluster has.
    """
    need = {"CPU": scaling.cpus_per_worker, "GPU": scaling.gpus_per_worker, **scaling.resources}
    free = [dict(node) for node in nodes]
    for worker in range(scaling.num_workers):
        for node in free:
            if all(node.get(res, 0.0) + 1e-9 >= amount for res, amount in need.items() if amount):
                for res, amount in need.items():
                    node[res] = node.get(res, 0.0) - amount
                break
        else:
            short = [
                res
                for res, amount in need.items()
                if amount and not any(n.get(res, 0.0) + 1e-9 >= amount for n in free)
            ] or [res for res, amount in need.items() if amount]
            have = {res: sum(n.get(res, 0.0) for n in nodes) for res in need}
            asked = ", ".join(f"{amount:g} {res}" for res, amount in need.items() if amount)
            has = " and ".join(f"{have[res]:g} {res}" for res in need if need[res] or res == "CPU")
            raise ConfigError(
                f"{field}: infeasible resources: {scaling.num_workers} workers x {asked} each; "
                f"the cluster has {has} in {len(nodes)} node(s); "
                f"worker {worker + 1} does not fit ({', '.join(short)} short)"
            )


# Nodes of one autoscaled type counted when its max is unbounded (-1): enough to place any job.
UNBOUNDED_NODES = 64


def cluster_nodes() -> list[dict[str, float]]:
    """Total resources of each node the connected cluster has or can scale to.

    An autoscaling cluster (cluster launcher, KubeRay) publishes its node types in GCS: the
    nodes it may still launch count too, so a GPU job is feasible on a cluster whose GPU workers
    are still at zero.
    """
    import ray

    from trainables.ray_compat import autoscaler_node_groups

    nodes = [dict(n["Resources"]) for n in ray.nodes() if n.get("Alive")]
    for resources, max_count in autoscaler_node_groups():
        count = UNBOUNDED_NODES if max_count == -1 else max_count
        nodes += [dict(resources) for _ in range(count)]
    return nodes
