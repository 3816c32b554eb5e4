"""Run and benchmark configuration: frozen pydantic models, defaults in one place."""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from reducecnn import catalog
from reducecnn.logs import plural

DATASETS = ("mnist", "fashion_mnist")
STUDY_MODELS = ("baseline", "approach1", "approach2")
# Early-stopping patience when the spec does not set one: the study's code used 1.
DEFAULT_PATIENCE = {"holdout": 2, "study": 1}
# Fields added after results were first recorded enter the run-id digest only when set away
# from their default, so every run id recorded before them stays valid (resume keeps working).
ADDED_LATER = {"lr_schedule": "constant", "augment_shift": 0, "model_source": None}
# Recipe fields a benchmark may list several values of: the grid is their cross product.
GRID_FIELDS = ("epochs", "batch_size", "patience", "learning_rate", "lr_schedule", "augment_shift")
# Training images each protocol uses from the 60,000 (holdout keeps the last 10,000 to validate).
TRAIN_IMAGES = {"holdout": 50_000, "study": 60_000}
MAX_SEED = 2**32 - 1  # what keras.utils.set_random_seed accepts
MAX_SEEDS = 100_000  # seeds per benchmark: `seeds: N` expands to a list
# What a benchmark trains, apart from its models and seeds: benchmarks that differ in one of these
# get different default names, so forgetting --name never mixes two recipes in one folder.
RECIPE_FIELDS = ("dataset", "protocol", *GRID_FIELDS, "train_limit")
# How a recipe field set away from its default enters the default name: mnist-holdout-e1-n2000.
NAME_PREFIXES = {"epochs": "e", "batch_size": "b", "patience": "p", "learning_rate": "lr", "lr_schedule": "",
                 "augment_shift": "shift", "train_limit": "n"}
MAX_DEFAULT_NAME = 100  # longer (a large grid): the recipe's digest stands for its values
# What a valid value looks like, in a config file and as a flag: appended to validation errors.
EXAMPLES = {
    "models": "models: approach1, or models: [baseline, approach1] (--models baseline,approach1)",
    "seeds": "seeds: 5 for seeds 0..4, or seeds: [0, 3, 7] (--seeds 5, --seed-list 0,3,7)",
    "dataset": "dataset: fashion_mnist (--dataset fashion_mnist)",
    "protocol": "protocol: study (--protocol study)",
    "epochs": "epochs: 10 (--epochs 10)",
    "batch_size": "batch_size: 32 (--batch-size 32)",
    "patience": "patience: 2 (--patience 2)",
    "learning_rate": "learning_rate: 0.001 (--learning-rate 0.001)",
    "train_limit": "train_limit: 5000 (--train-limit 5000)",
    "lr_schedule": "lr_schedule: cosine (--lr-schedule cosine)",
    "augment_shift": "augment_shift: 2 (--augment-shift 2)",
    "name": "name: my-benchmark (--name my-benchmark)",
    "cpus_per_run": "cpus_per_run: 1 (--cpus-per-run 1)",
    "gpus_per_run": "gpus_per_run: 0.25 (--gpus-per-run 0.25)",
    "cpu_devices": "cpu_devices: 2 (--cpu-devices 2)",
    "runs_per_task": "runs_per_task: 64 (--runs-per-task 64)",
    "max_retries": "max_retries: 2 (--max-retries 2)",
    "report": "report: false (--no-report)",
}


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
    # A user's model (`file.py:function`): its module's source; `model` is then the function's name.
    model_source: str | None = None

    @model_validator(mode="after")
    def _resolve_defaults(self) -> RunSpec:
        if self.model_source is None and self.model not in catalog.registered():
            raise ValueError(unknown_model_message(self.model, catalog.registered()))
        if self.model_source is not None and not self.model.isidentifier():
            raise ValueError(f"a user model's name must be its function's name, got {self.model!r}")
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

    # None: derived from the recipe (default_name), e.g. mnist-holdout for the laptop default.
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    models: tuple[str, ...] = STUDY_MODELS
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    dataset: Literal["mnist", "fashion_mnist"] = "mnist"
    protocol: Literal["holdout", "study"] = "holdout"
    # Recipe fields (GRID_FIELDS): one value, or several for a grid (their cross product).
    epochs: tuple[Annotated[int, Field(ge=1)], ...] = (10,)
    batch_size: tuple[Annotated[int, Field(ge=1)], ...] = (32,)
    patience: tuple[Annotated[int, Field(ge=0)] | None, ...] = (None,)
    learning_rate: tuple[Annotated[float, Field(gt=0)], ...] = (1e-3,)
    train_limit: int | None = Field(None, ge=1)
    lr_schedule: tuple[Literal["constant", "cosine"], ...] = ("constant",)
    augment_shift: tuple[Annotated[int, Field(ge=0, le=4)], ...] = (0,)
    data_dir: str | None = None
    out: str = "results"
    address: str | None = None
    cpus_per_run: float = Field(1.0, gt=0)
    gpus_per_run: float | None = Field(None, ge=0)
    cpu_devices: int = Field(1, ge=1)
    # K > 1: up to K seeds of one model and recipe as one vectorized computation on a group trainer
    # (reducecnn/vectorized.py, worker.py); None: 1 on CPUs, plan.GPU_GROUP_SIZE on GPUs.
    runs_per_task: int | None = Field(None, ge=1)
    resources_per_run: dict[str, float] = Field(default_factory=dict)
    max_retries: int = Field(2, ge=0)
    report: bool = True

    @field_validator(*GRID_FIELDS, mode="before")
    @classmethod
    def _grid_as_flags(cls, value: Any) -> Any:
        # As the flags: one value, or several separated by commas (a grid), or a list.
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, (list, tuple)):
            if not value:
                raise ValueError("needs at least one value")
            return tuple(dict.fromkeys(value))
        return (value,)

    @field_validator("models", mode="before")
    @classmethod
    def _models_as_flags(cls, value: Any) -> Any:
        # As --models: one name, or names separated by commas.
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds_as_flags(cls, value: Any) -> Any:
        # A number is a count (as --seeds N: seeds 0..N-1); a string a list (as --seed-list 0,3,7).
        if isinstance(value, bool):
            raise ValueError("must be a number of seeds or a list of seeds")
        if isinstance(value, int):
            if not 1 <= value <= MAX_SEEDS:
                raise ValueError(f"a number of seeds must lie between 1 and {MAX_SEEDS:,}, got {value}")
            return tuple(range(value))
        if isinstance(value, str):
            try:
                return tuple(int(part) for part in value.split(",") if part.strip())
            except ValueError:
                raise ValueError(f"not a number or a comma-separated list of seeds: {value!r}") from None
        return value

    @field_validator("models")
    @classmethod
    def _models_known(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        if not names:
            raise ValueError("at least one model is needed")
        unknown = [n for n in names if n not in catalog.registered() and not catalog.is_reference(n)]
        if unknown:
            raise ValueError(unknown_model_message(unknown[0], catalog.registered()))
        names = tuple(dict.fromkeys(names))
        seen: dict[str, str] = {}
        for name in names:
            try:
                short = catalog.load_reference(name).name if catalog.is_reference(name) else name
            except catalog.ModelError as error:
                raise ValueError(str(error)) from None
            if short in seen:
                raise ValueError(f"{seen[short]} and {name} would both be recorded as model {short!r}; "
                                 "rename one function")
            seen[short] = name
        return names

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

    @model_validator(mode="after")
    def _name_from_recipe(self) -> BenchmarkConfig:
        if self.name is None:
            object.__setattr__(self, "name", default_name(self))
        return self

    def recipes(self) -> list[dict[str, Any]]:
        """The grid: every combination of the recipe fields' values, in the order given."""
        return [dict(zip(GRID_FIELDS, values))
                for values in itertools.product(*(getattr(self, name) for name in GRID_FIELDS))]

    def specs(self) -> list[RunSpec]:
        """Expand models x recipes x seeds into run specs, model-major."""
        specs = []
        for model in self.models:
            user = catalog.load_reference(model) if catalog.is_reference(model) else None
            identity = {"model": user.name, "model_source": user.source} if user else {"model": model}
            for recipe in self.recipes():
                specs += [RunSpec(**identity, seed=seed, dataset=self.dataset, protocol=self.protocol,
                                  train_limit=self.train_limit, **recipe) for seed in self.seeds]
        return specs

    def shape(self) -> str:
        """'3 models x 4 recipes x 5 seeds' (recipes only when a grid)."""
        recipes = len(self.recipes())
        parts = [plural(len(self.models), "model")] + ([plural(recipes, "recipe")] if recipes > 1 else [])
        return " x ".join(parts + [plural(len(self.seeds), "seed")])


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """' (did you mean approach1?)' when a known name is close to `name`, else ''."""
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def unknown_model_message(name: str, known: Iterable[str]) -> str:
    """The error for a model name that is not registered, with the closest registered name if any."""
    return (f"unknown model {name!r}{did_you_mean(name, known)}; known: {', '.join(sorted(known))}, "
            "or your own as file.py:function")


def recipe_of(config: BenchmarkConfig) -> dict[str, Any]:
    """The config's recipe fields as the runs see them: grids as sorted tuples (their order changes
    no run), patience resolved per protocol, a train_limit covering the whole split as None."""
    recipe: dict[str, Any] = {"dataset": config.dataset, "protocol": config.protocol}
    for field in GRID_FIELDS:
        values = getattr(config, field)
        if field == "patience":
            values = [DEFAULT_PATIENCE[config.protocol] if value is None else value for value in values]
        recipe[field] = tuple(sorted(values))
    limit = config.train_limit
    recipe["train_limit"] = None if limit is None or limit >= TRAIN_IMAGES[config.protocol] else limit
    return recipe


def recipe_values(config: BenchmarkConfig) -> dict[str, Any]:
    """The recipe fields (after dataset and protocol) that are set away from their defaults."""
    recipe = recipe_of(config)
    defaults = {field: BenchmarkConfig.model_fields[field].default for field in GRID_FIELDS}
    defaults["patience"] = (DEFAULT_PATIENCE[config.protocol],)
    return {field: value for field, value in recipe.items()
            if field not in ("dataset", "protocol") and value != defaults.get(field)}


def default_name(config: BenchmarkConfig) -> str:
    """dataset-protocol, then each recipe field away from its default: 'mnist-holdout' for the
    laptop default, 'mnist-holdout-e1-n2000' for a 1-epoch run on 2,000 images."""
    base = f"{config.dataset}-{config.protocol}"
    tokens = [NAME_PREFIXES[field] + describe_values(values, "_") for field, values in recipe_values(config).items()]
    name = "-".join([base, *tokens])
    if len(name) > MAX_DEFAULT_NAME:
        digest = hashlib.sha256(json.dumps(recipe_values(config), sort_keys=True).encode()).hexdigest()[:10]
        name = f"{base}-recipe-{digest}"
    return name


def recipe_change_warning(folder: str, previous_config_json: str, config: BenchmarkConfig) -> str | None:
    """One line when a results folder whose config.json recorded another recipe receives this
    config; None when the recipes agree or the old file cannot be read as a config."""
    try:
        recorded = json.loads(previous_config_json)
        previous = BenchmarkConfig(**{field: recorded[field] for field in RECIPE_FIELDS if field in recorded})
    except (ValueError, TypeError, ValidationError):
        return None
    old, new = recipe_of(previous), recipe_of(config)
    changes = [f"{field} {describe_values(old[field])} -> {describe_values(new[field])}"
               for field in RECIPE_FIELDS if old[field] != new[field]]
    if not changes:
        return None
    return (f"{folder} already holds runs of another recipe ({', '.join(changes)}); the report keeps the "
            "recipes apart, another --name would keep their folders apart")


def describe_values(values: Any, separator: str = ",") -> str:
    """A recipe field's value(s) as the flags write them ('0.005,0.01'); a missing train_limit is 'full'."""
    if values is None:
        return "full"
    values = values if isinstance(values, tuple) else (values,)
    return separator.join(f"{value:.12g}" if isinstance(value, float) else str(value) for value in values)


def describe_validation_error(error: ValidationError) -> str:
    """One line naming the first invalid field, why, and what a valid value looks like."""
    first = error.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else ""
    # A grid field's element index (learning_rate.1) says less than the field's name.
    where = ".".join(str(part) for part in first["loc"] if not isinstance(part, int)) or "config"
    message = first["msg"].removeprefix("Value error, ").replace("Input should be ", "must be ")
    if first["type"] in ("tuple_type", "list_type"):
        message = "must be one value or a list of values"
    if first["type"] == "extra_forbidden":
        known = ", ".join(BenchmarkConfig.model_fields)
        hint = did_you_mean(where, BenchmarkConfig.model_fields) or " (check the spelling)"
        return f"{where}: unknown field{hint}; fields: {known}"
    if field == "models" and "unknown model" in message:
        return f"{where}: {message}"  # already names what would work
    example = EXAMPLES.get(field)
    return f"{where}: {message}" + (f"; e.g. {example}" if example else "")


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
    unknown = [str(key) for key in loaded if key not in BenchmarkConfig.model_fields]
    if unknown:
        hint = did_you_mean(unknown[0], BenchmarkConfig.model_fields) or " (check the spelling)"
        raise UserError(f"config file {path}: unknown field {unknown[0]!r}{hint}; "
                        f"fields: {', '.join(BenchmarkConfig.model_fields)}")
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
