"""Run and benchmark configuration: frozen pydantic models, defaults in one place."""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DATASETS = ("mnist", "fashion_mnist")
STUDY_MODELS = ("baseline", "approach1", "approach2")
# Early-stopping patience when the spec does not set one: the study's code used 1.
DEFAULT_PATIENCE = {"holdout": 2, "study": 1}
# Fields added after results were first recorded enter the run-id digest only when set away
# from their default, so every run id recorded before them stays valid (resume keeps working).
ADDED_LATER = {"lr_schedule": "constant", "augment_shift": 0}
# Training images each protocol uses from the 60,000 (holdout keeps the last 10,000 to validate).
TRAIN_IMAGES = {"holdout": 50_000, "study": 60_000}
MAX_SEED = 2**32 - 1  # what keras.utils.set_random_seed accepts


class UserError(Exception):
    """A problem with the user's input: printed as one line, exit code 2."""


class RunSpec(BaseModel):
    """Everything that determines the result of one training run (never resources or paths)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str
    seed: int = Field(ge=0, le=MAX_SEED)
    dataset: Literal["mnist", "fashion_mnist"] = "mnist"
    protocol: Literal["holdout", "study"] = "holdout"
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(32, ge=1)
    patience: int | None = Field(None, ge=0)
    optimizer: Literal["adam"] = "adam"
    learning_rate: float = Field(1e-3, gt=0)
    train_limit: int | None = Field(None, ge=1)
    lr_schedule: Literal["constant", "cosine"] = "constant"  # cosine: decay to 0 over all epochs
    augment_shift: int = Field(0, ge=0, le=4)  # random translation of up to N pixels while training

    @field_validator("model")
    @classmethod
    def _known_model(cls, name: str) -> str:
        # Imported here: the registry lists names without importing TensorFlow.
        from reducecnn.models import MODELS

        if name not in MODELS:
            raise ValueError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}")
        return name

    @model_validator(mode="after")
    def _resolve_defaults(self) -> RunSpec:
        if self.patience is None:
            object.__setattr__(self, "patience", DEFAULT_PATIENCE[self.protocol])
        # A limit at or above the protocol's training split trains on exactly that split:
        # one experiment, one run id (ids of smaller limits are unchanged).
        if self.train_limit is not None and self.train_limit >= TRAIN_IMAGES[self.protocol]:
            object.__setattr__(self, "train_limit", None)
        return self

    @property
    def digest(self) -> str:
        """Short hash of every field: a changed knob gives a new run id."""
        fields = self.model_dump(mode="json")
        for name, default in ADDED_LATER.items():
            if fields[name] == default:
                del fields[name]
        canonical = json.dumps(fields, sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:10]

    @property
    def run_id(self) -> str:
        return f"{self.model}-s{self.seed}-{self.digest}"


class BenchmarkConfig(BaseModel):
    """A benchmark: models x seeds under one protocol, plus where and how to run it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field("mnist-holdout", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    models: tuple[str, ...] = STUDY_MODELS
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    dataset: Literal["mnist", "fashion_mnist"] = "mnist"
    protocol: Literal["holdout", "study"] = "holdout"
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(32, ge=1)
    patience: int | None = Field(None, ge=0)
    learning_rate: float = Field(1e-3, gt=0)
    train_limit: int | None = Field(None, ge=1)
    lr_schedule: Literal["constant", "cosine"] = "constant"
    augment_shift: int = Field(0, ge=0, le=4)
    data_dir: str | None = None
    out: str = "results"
    address: str | None = None
    cpus_per_run: float = Field(1.0, gt=0)
    gpus_per_run: float | None = Field(None, ge=0)
    cpu_devices: int = Field(1, ge=1)
    # K > 1: up to K seeds of one model and recipe as one vectorized computation per task
    # (reducecnn/vectorized.py); None: 1 on CPUs, GPU_GROUP_SIZE where tasks get a GPU.
    runs_per_task: int | None = Field(None, ge=1)
    resources_per_run: dict[str, float] = Field(default_factory=dict)
    max_retries: int = Field(2, ge=0)
    report: bool = True

    @field_validator("models")
    @classmethod
    def _models_known(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        from reducecnn.models import MODELS

        if not names:
            raise ValueError("at least one model is needed")
        unknown = [n for n in names if n not in MODELS]
        if unknown:
            raise ValueError(f"unknown model {unknown[0]!r}; known: {', '.join(sorted(MODELS))}")
        return tuple(dict.fromkeys(names))

    @field_validator("seeds")
    @classmethod
    def _seeds_valid(cls, seeds: tuple[int, ...]) -> tuple[int, ...]:
        if not seeds:
            raise ValueError("at least one seed is needed")
        if min(seeds) < 0 or max(seeds) > MAX_SEED:
            raise ValueError(f"must be between 0 and {MAX_SEED} (2**32 - 1), got "
                             f"{min(seeds) if min(seeds) < 0 else max(seeds)}")
        return tuple(dict.fromkeys(seeds))

    @field_validator("gpus_per_run")
    @classmethod
    def _gpu_fraction(cls, gpus: float | None) -> float | None:
        # Ray accepts fractions only below one GPU; above, whole GPUs (a mirrored run).
        if gpus is not None and gpus > 1 and gpus != int(gpus):
            raise ValueError(f"gpus_per_run {gpus} must be a fraction <= 1 or a whole number")
        return gpus

    @model_validator(mode="after")
    def _groups_need_one_device(self) -> BenchmarkConfig:
        grouped = self.runs_per_task is not None and self.runs_per_task > 1
        if grouped and self.cpu_devices > 1:
            raise ValueError("runs_per_task > 1 cannot be combined with cpu_devices > 1 (a mirrored run trains alone)")
        if grouped and self.gpus_per_run is not None and self.gpus_per_run >= 2:
            raise ValueError("runs_per_task > 1 cannot be combined with gpus_per_run >= 2 (a vectorized group "
                             "trains on one device; a mirrored run trains alone)")
        return self

    def specs(self) -> list[RunSpec]:
        """Expand models x seeds into run specs, model-major."""
        return [
            RunSpec(
                model=model,
                seed=seed,
                dataset=self.dataset,
                protocol=self.protocol,
                epochs=self.epochs,
                batch_size=self.batch_size,
                patience=self.patience,
                learning_rate=self.learning_rate,
                train_limit=self.train_limit,
                lr_schedule=self.lr_schedule,
                augment_shift=self.augment_shift,
            )
            for model in self.models
            for seed in self.seeds
        ]


def describe_validation_error(error: ValidationError) -> str:
    """One line naming the first invalid field and why."""
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "config"
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown field (check the spelling)"
    return f"{where}: {message}"


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML, JSON or TOML config file into a dict; UserError when missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {path} does not exist")
    text = path.read_text()
    try:
        if path.suffix == ".json":
            loaded = json.loads(text)
        elif path.suffix == ".toml":
            loaded = tomllib.loads(text)
        else:
            loaded = yaml.safe_load(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError, yaml.YAMLError) as error:
        detail = str(error).splitlines()[0]
        raise UserError(f"config file {path} is malformed: {detail}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise UserError(f"config file {path} must hold a mapping of fields, not {type(loaded).__name__}")
    return loaded


def make_benchmark_config(values: dict[str, Any]) -> BenchmarkConfig:
    """Validate benchmark fields; UserError with one line on the first problem."""
    try:
        return BenchmarkConfig(**values)
    except ValidationError as error:
        raise UserError(describe_validation_error(error)) from None


def make_run_spec(values: dict[str, Any]) -> RunSpec:
    """Validate run-spec fields; UserError with one line on the first problem."""
    try:
        return RunSpec(**values)
    except ValidationError as error:
        raise UserError(describe_validation_error(error)) from None
