"""What trains where, decided on the driver before anything starts: vectorized groups on
long-lived trainers (one per GPU, or per CPU slot), the rest one run per task, and the reason
for every choice, printed as one line."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

from reducecnn import logs
from reducecnn.config import BenchmarkConfig, RunSpec, UserError

# Seeds per vectorized group where runs get a GPU: approach1 at K=64 ran 7.1x eight packed
# separate runs on an H100 (docs/performance.md). On CPUs one run per task stays the default
# (grouped convolutions are slow on TensorFlow's CPU kernels).
GPU_GROUP_SIZE = 64
# Fields members of one group may differ in: everything else must be equal for one computation.
PER_MEMBER = ("seed", "learning_rate", "patience")
# The cluster launcher writes the autoscaling config here on the head node (`ray up`).
AUTOSCALER_CONFIG = Path("~/ray_bootstrap_config.yaml")


def vector_key(spec: RunSpec) -> str:
    """Runs with equal keys can be one vectorized group: one model, data set and recipe."""
    return json.dumps(spec.model_dump(mode="json", exclude=set(PER_MEMBER)), sort_keys=True)


def groups(specs: list[RunSpec], size: int) -> list[list[RunSpec]]:
    """Specs of equal `vector_key` in groups of at most `size`, as few and as even as possible."""
    by_key: dict[str, list[RunSpec]] = {}
    for spec in specs:
        by_key.setdefault(vector_key(spec), []).append(spec)
    chunks = []
    for same in by_key.values():
        count = math.ceil(len(same) / max(1, size))
        step = math.ceil(len(same) / count)
        chunks += [same[i:i + step] for i in range(0, len(same), step)]
    return chunks


def autoscaler_gpus(config_path: Path = AUTOSCALER_CONFIG) -> bool:
    """Can an autoscaler add GPU nodes? True where this head's cluster-launcher config has a
    node type with GPUs (the driver runs on the head under `ray submit` and `ray job submit`)."""
    path = config_path.expanduser()
    if not path.is_file():
        return False
    try:
        node_types = (yaml.safe_load(path.read_text()) or {}).get("available_node_types", {})
    except yaml.YAMLError:
        return False
    return any((node.get("resources") or {}).get("GPU", 0) > 0 and node.get("max_workers", 0) > 0
               for node in node_types.values())


@dataclass(frozen=True)
class Cluster:
    """What the Ray cluster has when the benchmark starts."""

    cpus: float
    gpus: float
    can_add_gpus: bool = False


@dataclass(frozen=True)
class Plan:
    """Where each run trains: `groups` on trainers (Ray actors), `singles` one per task."""

    groups: list[list[RunSpec]]
    singles: list[RunSpec]
    on_gpus: bool
    trainers: int
    trainer_options: dict
    task_options: dict
    backend: str
    why_cpus: str = ""
    reasons: dict[str, str] = field(default_factory=dict)  # model -> why it trains one run per task

    def line(self) -> str:
        """One line: how many runs, in how many groups of what K, where, with which backend, and why."""
        parts = []
        if self.groups:
            sizes = sorted({len(group) for group in self.groups})
            k = f"K={sizes[0]}" if len(sizes) == 1 else f"K={sizes[0]}-{sizes[-1]}"
            where = (f"{logs.plural(self.trainers, 'GPU trainer')} ({self.trainer_options['num_gpus']:g} GPU each)"
                     if self.on_gpus else f"{logs.plural(self.trainers, 'CPU trainer')}")
            parts.append(f"{logs.plural(sum(map(len, self.groups)), 'run')} vectorized in "
                         f"{logs.plural(len(self.groups), 'group')} of {k} on {where}, Keras backend {self.backend}")
        if self.singles:
            gpus = self.task_options["num_gpus"]
            where = f"{gpus:g} GPU each" if gpus else f"on CPUs ({self.task_options['num_cpus']:g} each)"
            text = f"{logs.plural(len(self.singles), 'run')} one per task, {where}"
            if self.reasons:
                text += " (" + "; ".join(f"{model}: {why}" for model, why in sorted(self.reasons.items())) + ")"
            parts.append(text)
        line = "plan: " + "; ".join(parts)
        return line + (f". {self.why_cpus}" if self.why_cpus else "")


def _gpus_wanted(config: BenchmarkConfig, cluster: Cluster) -> tuple[bool, str]:
    """(train on GPUs?, why not) from --gpus-per-run and what the cluster has or can get."""
    if config.gpus_per_run == 0:
        return False, "On CPUs: --gpus-per-run 0."
    if config.gpus_per_run is None:
        if cluster.gpus > 0:
            return True, ""
        hint = ("; ask for GPU workers with --gpus-per-run 1 (the autoscaler then starts them)"
                if cluster.can_add_gpus else "")
        return False, f"On CPUs: the cluster has no GPU now{hint}."
    if cluster.gpus == 0 and not cluster.can_add_gpus:
        raise UserError(f"--gpus-per-run {config.gpus_per_run:g} asks for GPUs, but this Ray cluster has none and "
                        "no autoscaler that can add GPU nodes; drop --gpus-per-run to train on CPUs")
    return True, ""


def make_plan(config: BenchmarkConfig, specs: list[RunSpec], cluster: Cluster,
              refusal: Callable[[str, str | None], str | None]) -> Plan:
    """Decide, before training, which runs are vectorized and where everything trains.
    `refusal(model, source)`: why a model cannot be vectorized, or None (`stacked.refusal`)."""
    on_gpus, why_cpus = _gpus_wanted(config, cluster)
    gpus = config.gpus_per_run
    size = config.runs_per_task or (GPU_GROUP_SIZE if on_gpus and (gpus is None or gpus < 2) else 1)
    vectorized, singles, reasons = [], [], {}
    for spec in specs:
        why = refusal(spec.model, spec.model_source) if size > 1 else None
        (singles if size == 1 or why else vectorized).append(spec)
        if why:
            reasons[spec.model] = why
    chunks = groups(vectorized, size)
    trainer_gpus = min(1.0, gpus) if on_gpus and gpus else (1.0 if on_gpus else 0.0)
    # A trainer holds one GPU (or --gpus-per-run of one) for the whole benchmark; on CPUs a CPU slot.
    if on_gpus:
        capacity = int(cluster.gpus // trainer_gpus) if cluster.gpus else len(chunks)
    else:
        capacity = int(cluster.cpus // config.cpus_per_run)
    trainer_options = {"num_cpus": config.cpus_per_run, "num_gpus": trainer_gpus,
                       "resources": dict(config.resources_per_run), "scheduling_strategy": "SPREAD"}
    # Runs the stacked form cannot reproduce train with TensorFlow, one per task: on CPUs unless
    # --gpus-per-run gives them GPUs (TensorFlow's GPU path has not been measured).
    task_options = {"num_cpus": config.cpus_per_run, "num_gpus": gpus if gpus else 0.0,
                    "resources": dict(config.resources_per_run), "max_retries": config.max_retries,
                    "scheduling_strategy": "SPREAD"}
    return Plan(groups=chunks, singles=singles, on_gpus=on_gpus and bool(chunks or task_options["num_gpus"]),
                trainers=max(1, min(len(chunks), capacity)) if chunks else 0, trainer_options=trainer_options,
                task_options=task_options, backend=trainer_backend(), why_cpus=why_cpus, reasons=reasons)


def trainer_backend() -> str:
    """The Keras backend trainers use: $KERAS_BACKEND where the driver sets it (passed on to
    them), else Keras's default, TensorFlow."""
    return os.environ.get("KERAS_BACKEND") or "tensorflow"
