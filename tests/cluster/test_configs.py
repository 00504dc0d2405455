"""The cluster configs as Ray and KubeRay read them: launcher YAMLs against the JSON schema
shipped in the installed ray package, KubeRay manifests against the fields the RayJob and
RayCluster CRDs require, and the security defaults every config keeps."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray.autoscaler
import yaml

from sweeps.spec import SweepSpec, load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = sorted((ROOT / "cluster").glob("*.yaml"))
LAUNCHER = [p for p in LAUNCHER if p.name != "runtime_env.yaml"]


def ray_schema() -> dict[str, Any]:
    path = Path(os.path.dirname(ray.autoscaler.__file__), "ray-schema.json")
    return json.loads(path.read_text())


@pytest.mark.parametrize("path", LAUNCHER, ids=[p.name for p in LAUNCHER])
def test_launcher_configs_validate_against_rays_own_schema(path: Path) -> None:
    config = yaml.safe_load(path.read_text())
    jsonschema.validate(config, ray_schema())
    assert config["provider"]["type"] in ("aws", "gcp")
    assert path.read_text().startswith("# "), "each config says how to start it"
    # Token auth on every node; the dashboard/job API on loopback only.
    head = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head and "0.0.0.0" not in path.read_text()
    for commands in (config["head_start_ray_commands"], config["worker_start_ray_commands"]):
        assert any("RAY_AUTH_MODE=token ray start" in c for c in commands)
    assert "~/.ray/auth_token" in config["file_mounts"]
    # Trial drivers' resource on the on-demand head; DDP ranks' resource on GPU workers only.
    types = config["available_node_types"]
    assert "on_demand" in types[config["head_node_type"]]["resources"]
    workers = [t for name, t in types.items() if name != config["head_node_type"]]
    assert workers and all("gpu_node" in t["resources"] for t in workers)
    assert "on_demand" not in types[next(n for n in types if "spot" in n)]["resources"]


def test_the_schema_check_is_not_vacuous() -> None:
    config = yaml.safe_load(LAUNCHER[0].read_text())
    config["available_node_types"]["head"]["node_cofig"] = {}
    with pytest.raises(jsonschema.ValidationError, match="node_cofig"):
        jsonschema.validate(config, ray_schema())


def pod_templates(cluster_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [cluster_spec["headGroupSpec"]["template"]] + [
        group["template"] for group in cluster_spec["workerGroupSpecs"]
    ]


def check_ray_cluster_spec(spec: dict[str, Any]) -> None:
    """The fields KubeRay's RayCluster CRD requires, and our security defaults."""
    assert spec["authOptions"]["mode"] == "token"
    assert tuple(int(x) for x in spec["rayVersion"].split(".")) >= (2, 52)
    head = spec["headGroupSpec"]
    assert isinstance(head["rayStartParams"], dict)
    assert head.get("serviceType", "ClusterIP") == "ClusterIP"
    assert "on_demand" in head["rayStartParams"]["resources"]
    for group in spec["workerGroupSpecs"]:
        assert isinstance(group["groupName"], str) and isinstance(group["rayStartParams"], dict)
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        assert "gpu_node" in group["rayStartParams"]["resources"]
    for template in pod_templates(spec):
        containers = template["spec"]["containers"]
        assert containers and all(c["name"] and c["image"] for c in containers)
        for container in containers:
            for var in container.get("env", []):
                # Secrets only by reference to a Kubernetes Secret, never inline.
                if "KEY" in var["name"] or "TOKEN" in var["name"]:
                    assert "valueFrom" in var and "value" not in var


def test_the_rayjob_manifest_runs_a_valid_spec_from_its_configmap() -> None:
    docs = list(yaml.safe_load_all((ROOT / "cluster/kuberay/rayjob.yaml").read_text()))
    by_kind = {d["kind"]: d for d in docs}
    config_map, job = by_kind["ConfigMap"], by_kind["RayJob"]
    assert job["apiVersion"] == "ray.io/v1" and job["metadata"]["name"]
    spec = job["spec"]
    assert spec["entrypoint"].startswith("python -m sweeps run ")
    check_ray_cluster_spec(spec["rayClusterSpec"])
    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert "env_vars" not in runtime_env  # secrets never travel in a runtime env

    # The entrypoint's file is the ConfigMap's key, mounted on the head.
    spec_path = Path(spec["entrypoint"].split()[-1])
    head = spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    (mount,) = [m for m in head["containers"][0]["volumeMounts"] if m["name"] == "sweep-spec"]
    assert Path(mount["mountPath"]) == spec_path.parent
    (volume,) = [v for v in head["volumes"] if v["name"] == "sweep-spec"]
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    sweep = parse_spec(yaml.safe_load(config_map["data"][spec_path.name]))
    assert_cluster_placement(sweep)


def test_the_raycluster_manifest_keeps_token_auth_and_a_private_dashboard() -> None:
    (doc,) = yaml.safe_load_all((ROOT / "cluster/kuberay/raycluster.yaml").read_text())
    assert doc["kind"] == "RayCluster" and doc["apiVersion"] == "ray.io/v1"
    check_ray_cluster_spec(doc["spec"])


def assert_cluster_placement(sweep: SweepSpec) -> None:
    assert "on_demand" in sweep.driver_resources
    assert "gpu_node" in sweep.job.scaling.resources
    assert sweep.job.scaling.gpus_per_worker > 0
    assert "://" in sweep.storage_path and sweep.promote and "://" in sweep.promote.to


def test_the_cluster_example_pins_drivers_and_ranks_to_the_configs_resources() -> None:
    assert_cluster_placement(load_spec(ROOT / "sweeps/examples/cluster.yaml"))


def test_the_runtime_env_installs_the_project_and_carries_no_secret() -> None:
    text = (ROOT / "cluster/runtime_env.yaml").read_text()
    env = yaml.safe_load(text)
    assert env["pip"]["packages"] == ["${RAY_RUNTIME_ENV_CREATE_WORKING_DIR}"]
    assert {".venv", "results", ".git"} <= set(env["excludes"])
    assert "env_vars" not in env
