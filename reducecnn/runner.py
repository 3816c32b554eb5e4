"""The driver: plan where every run trains, then feed Ray tasks (one run each) and group trainers
(one actor per GPU or CPU slot), writing each result the moment it arrives."""

from __future__ import annotations

import collections
import contextlib
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import ray
from tqdm import tqdm

import reducecnn
from reducecnn import data, devices, logs, plan, store, worker
from reducecnn.config import GRID_FIELDS, BenchmarkConfig, RunSpec, UserError
from reducecnn.records import RunResult, with_fields

WAITING_NOTICE_SECONDS = 30  # how often the driver says it still waits for GPU workers
TRAINER_QUEUE = 2  # groups handed to a trainer at once: one training, one being built


@dataclass(frozen=True)
class Outcome:
    """What a benchmark invocation did."""

    location: store.Location
    total: int
    skipped: int
    ok: int
    failed: int
    wall_seconds: float


@contextlib.contextmanager
def _in_package_parent():
    """Run inside the folder that holds the installed package. Ray puts the driver's working
    directory first on every worker's sys.path, so a folder named `reducecnn` where the user
    stands (a checkout's root, say) would shadow the package in the workers."""
    here = os.getcwd()
    os.chdir(Path(reducecnn.__file__).resolve().parents[1])
    try:
        yield
    finally:
        os.chdir(here)


def connect(address: str | None) -> str | None:
    """Join the cluster at `address` (or $RAY_ADDRESS, or one `ray start` left here), else start
    a local Ray; returns the dashboard URL, if any."""
    if ray.is_initialized():
        return None
    address = address or os.environ.get("RAY_ADDRESS")
    with _in_package_parent():
        if address:
            context = ray.init(address=address, **logs.ray_init_options())
        else:
            # A laptop run: the dashboard (and the Jobs API behind it) listens on localhost only.
            context = ray.init(dashboard_host="127.0.0.1", **logs.ray_init_options())
    return context.dashboard_url or None


@ray.remote(num_cpus=0)
def _worker_version() -> str | None:
    return getattr(reducecnn, "__version__", None)


def check_workers() -> None:
    """One clear line before anything trains when the workers import another reducecnn."""
    theirs = ray.get(_worker_version.remote())
    if theirs is None:
        raise UserError("Ray workers import a folder named reducecnn instead of the installed package (one in the "
                        f"folder the cluster was started from?): start it from another folder than {os.getcwd()}")
    if theirs != reducecnn.__version__:
        raise UserError(f"Ray workers import reducecnn {theirs}, this driver reducecnn {reducecnn.__version__}: "
                        "install the same version on every node (pip install -e . in each checkout)")


def cluster_now(address: str | None) -> plan.Cluster:
    """The cluster's CPUs and GPUs now, and whether an autoscaler can add GPU nodes."""
    resources = ray.cluster_resources()
    joined = bool(address or os.environ.get("RAY_ADDRESS"))
    return plan.Cluster(cpus=resources.get("CPU", 0.0), gpus=resources.get("GPU", 0.0),
                        can_add_gpus=joined and plan.autoscaler_gpus())


def _refusal(model: str, source: str | None) -> str | None:
    """`stacked.refusal` for the planner, loading Keras in the driver only when runs are grouped."""
    devices.load(driver=True)
    # Keras (5.7 s here) loads after devices.load() and only when a plan groups runs; Ray workers
    # import this module for `_worker_version` and need no Keras.
    from reducecnn import stacked

    return stacked.refusal(model, source)


def _recipe_label(record, varying: tuple[str, ...]) -> str:
    """' [learning_rate 0.005, augment_shift 1]' for the grid fields that vary; '' otherwise."""
    values = [getattr(record, "max_epochs" if name == "epochs" else name) for name in varying]
    labels = [f"{name} {value:g}" if isinstance(value, float) else f"{name} {value}"
              for name, value in zip(varying, values)]
    return f" [{', '.join(labels)}]" if labels else ""


def _line(result: RunResult, varying: tuple[str, ...] = ()) -> str:
    """One line per finished run for the log, naming the recipe where the benchmark is a grid."""
    record = result.record
    who = f"{record.model} seed {record.seed}{_recipe_label(record, varying)}"
    if record.status != "ok":
        return f"FAILED {who}: {record.error}"
    return (f"ok {who}: test accuracy {record.test_accuracy:.4f}, "
            f"{logs.plural(record.epochs_run, 'epoch')} in {record.train_seconds:.0f} s"
            + logs.chance_hint(record.test_accuracy))


@dataclass
class _Trainer:
    actor: object
    ready: bool = False
    outstanding: int = 0
    released: bool = False


@dataclass
class _Group:
    group_id: str
    specs: list[RunSpec]
    trainer: int = -1
    received: set[str] = field(default_factory=set)

    def unreceived(self) -> list[RunSpec]:
        return [spec for spec in self.specs if spec.run_id not in self.received]


class _Driver:
    """The loop over everything in flight: tasks, trainers starting, groups streaming members."""

    def __init__(self, config: BenchmarkConfig, the_plan: plan.Plan, location: store.Location,
                 arrays_ref, dataset_name: str, bar: tqdm):
        self.config, self.plan, self.location, self.bar = config, the_plan, location, bar
        self.arrays_ref, self.dataset_name = arrays_ref, dataset_name
        self.threads = max(1, round(config.cpus_per_run))
        self.varying = tuple(name for name in GRID_FIELDS if len(getattr(config, name)) > 1)
        self.pending: dict = {}
        self.queue: collections.deque[_Group] = collections.deque()
        self.trainers: list[_Trainer] = []
        self.attempts: collections.Counter[str] = collections.Counter()
        self.ok = self.failed = 0
        self.invocation = uuid.uuid4().hex[:8]
        self.groups_made = 0

    def _group(self, specs: list[RunSpec]) -> _Group:
        self.groups_made += 1
        return _Group(f"{self.invocation}-g{self.groups_made}", specs)

    def start(self) -> None:
        """Submit every single run, start the trainers, queue the groups."""
        remote = ray.remote(max_calls=1 if self.plan.task_options["num_gpus"] else 0)(worker.train_task)
        for spec in self.plan.singles:
            ref = remote.options(**self.plan.task_options).remote(spec, self.arrays_ref, self.dataset_name,
                                                                  self.threads, self.config.cpu_devices, logs.verbose())
            self.pending[ref] = ("single", spec)
        self.queue.extend(self._group(specs) for specs in self.plan.groups)
        for _ in range(self.plan.trainers):
            self._start_trainer()

    def _start_trainer(self, index: int | None = None) -> None:
        """Start a trainer (in slot `index`, replacing one that could not start); it says when it is placed."""
        env = {name: os.environ[name] for name in ("KERAS_BACKEND",) if name in os.environ}
        if self.plan.trainer_options["num_gpus"] and self.plan.trainer_options["num_gpus"] < 1:
            env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"  # JAX would take 75% of a GPU it shares
        options = dict(self.plan.trainer_options, max_concurrency=TRAINER_QUEUE,
                       max_restarts=-1, max_task_retries=0, runtime_env={"env_vars": env} if env else None)
        actor = ray.remote(worker.GroupTrainer).options(**options).remote(
            self.dataset_name, self.threads, logs.verbose())
        if index is None:
            self.trainers.append(_Trainer(actor))
            index = len(self.trainers) - 1
        else:
            self.trainers[index] = _Trainer(actor)
        self.pending[actor.ready.remote()] = ("ready", index)

    def _dispatch(self, index: int) -> None:
        """Hand queued groups to trainer `index` until it holds TRAINER_QUEUE; release it when idle."""
        trainer = self.trainers[index]
        starting = sum(not t.ready and not t.released for t in self.trainers)
        # A second group queued ahead only where the trainers still starting leave enough for each.
        while trainer.ready and self.queue and (not trainer.outstanding or (
                trainer.outstanding < TRAINER_QUEUE and len(self.queue) > starting)):
            group = self.queue.popleft()
            group.trainer = index
            trainer.outstanding += 1
            self.pending[trainer.actor.train.remote(group.group_id, group.specs, self.arrays_ref)] = ("group", group)
        if trainer.ready and not trainer.outstanding and not self.queue:
            ray.kill(trainer.actor)  # its GPU or CPU goes to whatever still waits
            trainer.ready, trainer.released = False, True

    def record(self, result: RunResult) -> None:
        """Write one result now; a run another writer already recorded ok counts as ok."""
        record = with_fields(result.record, benchmark=self.config.name)
        written = store.write_run(record, result.epochs, self.location)
        self.ok += record.status == "ok" or not written
        self.failed += record.status != "ok" and written
        self.bar.write(_line(result, self.varying) + ("" if written else "; an ok record was already there: kept it, "
                                                      "this result not written"), file=sys.stderr)
        self.bar.update()

    def step(self, waitable) -> None:
        """Handle one ready task, trainer start or streamed member."""
        kind, item = self.pending.pop(waitable)
        if kind == "single":
            try:
                result = ray.get(waitable)
            except ray.exceptions.RayError as error:
                result = worker.failure(item, error)
            self.record(result)
        elif kind == "ready":
            try:
                ray.get(waitable)
                self.trainers[item].ready = True
            except ray.exceptions.ActorUnavailableError:
                time.sleep(0.5)  # restarting after a death: ask again until it answers
                self._await_trainer(item)
            except ray.exceptions.RayError as error:
                self._trainer_lost(item, error)
            self._dispatch(item)
        else:
            self._stream(waitable, item)

    def _await_trainer(self, index: int) -> None:
        """Send no group to trainer `index` until it answers again (Ray restarts a dead one)."""
        self.trainers[index].ready = False
        if not any(kind == "ready" and item == index for kind, item in self.pending.values()):
            self.pending[self.trainers[index].actor.ready.remote()] = ("ready", index)

    def _trainer_lost(self, index: int, error: Exception) -> None:
        """A trainer that could not start: start another, or fail what waits when none is left."""
        self.attempts[f"trainer-{index}"] += 1
        if self.attempts[f"trainer-{index}"] <= self.config.max_retries:
            ray.kill(self.trainers[index].actor)
            self._start_trainer(index)
        elif not any(t.ready for t in self.trainers):
            while self.queue:
                for spec in self.queue.popleft().specs:
                    self.record(worker.failure(spec, error))

    def settle(self) -> None:
        """When every group is done, trainers still waiting for a place are not needed: drop them."""
        if self.queue or any(kind == "group" for kind, _ in self.pending.values()):
            return
        for waitable, (kind, index) in list(self.pending.items()):
            if kind == "ready":
                del self.pending[waitable]
                ray.kill(self.trainers[index].actor)
                self.trainers[index].released = True

    def _stream(self, generator, group: _Group) -> None:
        """The next member of a streaming group, its end, or its trainer's failure."""
        trainer = self.trainers[group.trainer]
        try:
            result = ray.get(next(generator))
        except StopIteration:
            trainer.outstanding -= 1
            if group.unreceived():  # cannot happen unless a trainer skips members: retry them
                self.queue.appendleft(self._group(group.unreceived()))
            self._dispatch(group.trainer)
            return
        except ray.exceptions.RayError as error:
            trainer.outstanding -= 1
            self._group_failed(group, error)
            self._dispatch(group.trainer)
            for index, other in enumerate(self.trainers):
                if other.ready and index != group.trainer:
                    self._dispatch(index)
            return
        group.received.add(result.record.run_id)
        self.record(result)
        self.pending[generator] = ("group", group)

    def _group_failed(self, group: _Group, error: Exception) -> None:
        """Out of memory: retry in halves. A dead trainer (restarted by Ray): retry the members not
        yet recorded, up to --max-retries each. Anything else: record them failed."""
        left = group.unreceived()
        cause = getattr(error, "cause", None)
        if isinstance(cause, worker.GroupOutOfMemory) and len(left) > 1:
            half = len(left) // 2
            self.bar.write(f"{group.group_id}: out of memory with {len(left)} members; retrying as "
                           f"{half} + {len(left) - half}", file=sys.stderr)
            self.queue.extendleft([self._group(left[half:]), self._group(left[:half])])
            return
        if isinstance(error, (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError)):
            self._await_trainer(group.trainer)
            retry = []
            for spec in left:
                self.attempts[spec.run_id] += 1
                if self.attempts[spec.run_id] <= self.config.max_retries:
                    retry.append(spec)
                else:
                    self.record(worker.failure(spec, error))
            if retry:
                self.bar.write(f"{group.group_id}: its trainer died; retrying the {logs.plural(len(retry), 'run')} "
                               "not yet recorded", file=sys.stderr)
                self.queue.appendleft(self._group(retry))
            return
        for spec in left:
            self.record(worker.failure(spec, error))


def _waiting_notice(driver: _Driver, started: float, last: float) -> float:
    """Say, every WAITING_NOTICE_SECONDS, that GPU trainers are still being placed."""
    now = time.monotonic()
    if not driver.plan.on_gpus or not driver.trainers or any(t.ready for t in driver.trainers) or not driver.queue:
        return last
    if now - last >= WAITING_NOTICE_SECONDS:
        minutes, seconds = divmod(int(now - started), 60)
        driver.bar.write(f"waiting for GPU workers: 0 of {logs.plural(len(driver.trainers), 'trainer')} placed, "
                         f"{minutes}m{seconds:02d}s so far (`ray status` shows the autoscaler's progress)",
                         file=sys.stderr)
        return now
    return last


def run_benchmark(config: BenchmarkConfig, dataset: data.Dataset, location: store.Location,
                  specs: list[RunSpec] | None = None, done: set[str] | None = None) -> Outcome:
    """Train every spec (default: the config's) not yet recorded ok, writing each record as it finishes."""
    start = time.perf_counter()
    specs = config.specs() if specs is None else specs
    done = store.recorded_ok(location) if done is None else done
    todo = [spec for spec in specs if spec.run_id not in done]
    print(f"{logs.plural(len(specs), 'run')} ({config.shape()}) in {config.name}: "
          f"{len(specs) - len(todo)} already recorded, {len(todo)} to train",
          file=sys.stderr)
    driver = None
    if todo:
        dashboard = connect(config.address)
        if dashboard:
            print(f"Ray dashboard: http://{dashboard.removeprefix('http://')}", file=sys.stderr)
        check_workers()
        the_plan = plan.make_plan(config, todo, cluster_now(config.address), _refusal)
        print(the_plan.line(), file=sys.stderr)
        arrays_ref = ray.put((dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test))
        with tqdm(total=len(todo), unit="run", file=sys.stderr, dynamic_ncols=True) as bar:
            driver = _Driver(config, the_plan, location, arrays_ref, dataset.name, bar)
            driver.start()
            started = last_notice = time.monotonic()
            while driver.pending:
                # A timeout keeps the driver returning to Python, so Ctrl-C interrupts it at once.
                ready, _ = ray.wait(list(driver.pending), num_returns=1, timeout=1.0)
                if ready:
                    driver.step(ready[0])
                    driver.settle()
                last_notice = _waiting_notice(driver, started, last_notice)
    ok, failed = (driver.ok, driver.failed) if driver else (0, 0)
    return Outcome(location, len(specs), len(specs) - len(todo), ok, failed, time.perf_counter() - start)
