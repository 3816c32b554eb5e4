"""Command line: `reducecnn models | train | benchmark | report | export`."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Sequence

from reducecnn import catalog, devices, logs
from reducecnn.config import (STUDY_MODELS, UserError, make_benchmark_config, make_run_spec, read_config_file,
                              unknown_model_message)
from reducecnn.records import RunResult, failed_record, with_fields

# The commands import the libraries their work needs where they start it: `api`, `data` and
# `store` bring pandas, pyarrow and NumPy (0.45 s), so `--help` and a bad flag answer in 0.25 s
# rather than 0.7 s (`reducecnn benchmark --models nope`, 2-core machine); Keras (5.7 s) and the
# report (matplotlib, SciPy: 1.5 s) only for the commands that use them.


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line and exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


VERBOSE_HELP = "show TensorFlow's and Ray's own log lines (hidden by default)"


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _seed_list(text: str) -> list[int]:
    try:
        return [int(part) for part in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}") from None


def add_spec_flags(parser: argparse.ArgumentParser, grid: bool = False) -> None:
    """Flags shared by `train` and `benchmark`: what a run depends on. With `grid` (benchmark),
    each recipe flag takes several comma-separated values; the runs are their cross product."""
    several = ("; several, comma-separated, make a grid" if grid else "")
    number = str if grid else int  # a grid's list is parsed by the config, with its messages
    parser.add_argument("--dataset", help="mnist (default) or fashion_mnist")
    parser.add_argument("--protocol", help="holdout (default: validate on the last 10k training images) "
                        "or study (the notebook's way: validate on the test set)")
    parser.add_argument("--epochs", type=number, help="maximum epochs (default 10; early stopping may end sooner)"
                        + several)
    parser.add_argument("--batch-size", type=number, help="training batch size (default 32, as the study)" + several)
    parser.add_argument("--patience", type=number, help="early-stopping patience on val_loss (default: holdout 2, "
                        "study 1)" + several)
    parser.add_argument("--learning-rate", type=str if grid else float, help="Adam learning rate (default 0.001)"
                        + several)
    parser.add_argument("--train-limit", type=int, help="train on the first N training images only (smoke runs)")
    parser.add_argument("--lr-schedule", help="constant (default, as the study) or cosine (decay to 0 over all "
                        "epochs)" + several)
    parser.add_argument("--augment-shift", type=number, help="shift training images randomly by up to N pixels "
                        "(0-4, default 0)" + several)
    parser.add_argument("--data-dir", help="folder with mnist.npz or the four IDX files (default: offline sources)")
    parser.add_argument("--name", help="benchmark name: results go to OUT/NAME/ (default: the dataset, protocol and "
                        "the recipe fields set away from their defaults, e.g. mnist-holdout, mnist-holdout-e1-n2000)")
    parser.add_argument("--out", help="results root, a local folder or a pyarrow.fs URI such as s3://bucket/prefix "
                        "(default results/)")
    parser.add_argument("--cpu-devices", type=int, help="split the CPU into N logical devices and train under "
                        "MirroredStrategy over them (tests the multi-GPU path without GPUs)")


def build_parser() -> argparse.ArgumentParser:
    """The `reducecnn` parser with its subcommands."""
    parser = _Parser(prog="reducecnn", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                     epilog="examples:\n  reducecnn models\n  reducecnn benchmark --seeds 3\n"
                            "  reducecnn report results/mnist-holdout\n"
                            "  reducecnn benchmark --help                 # every flag, the models")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    models = commands.add_parser("models", help="print the parameter table of every registered model (no training)")
    models.add_argument("--models", type=_csv, help="only these, e.g. approach1,my_models.py:tiny")
    models.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)

    train = commands.add_parser("train", help="train one (model, seed) in this process and record it")
    train.add_argument("--model", required=True, help="a registered model name (see `reducecnn models`) or your "
                       "own builder as file.py:function")
    train.add_argument("--seed", type=int, required=True, help="random seed (>= 0)")
    train.add_argument("--threads", type=int, help="TensorFlow intra/inter-op threads (default: TF's choice)")
    add_spec_flags(train)
    train.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)

    bench = commands.add_parser("benchmark", help="train models x seeds as Ray tasks, then write the report")
    add_benchmark_flags(bench)

    report = commands.add_parser("report", help="summary tables and plots of a results folder")
    report.add_argument("results_dirs", nargs="+", metavar="RESULTS_DIR",
                        help="a benchmark's folder, e.g. results/mnist-holdout or s3://bucket/results/mnist-holdout; "
                        "several are combined (needs --into); a folder of benchmarks lists them")
    report.add_argument("--into", help="folder for the combined report of several results folders")
    report.add_argument("--margin", type=float, default=0.5,
                        help="equivalence margin in percentage points for the 'same accuracy' verdict (default 0.5)")
    export = commands.add_parser("export", help="write a results folder in another tool's format")
    formats = export.add_subparsers(dest="format", required=True, parser_class=_Parser)
    tensorboard = formats.add_parser("tensorboard", help="one HParams session per run, with its per-epoch scalars "
                                     "(then: tensorboard --logdir LOGDIR)")
    tensorboard.add_argument("results_dir", metavar="RESULTS_DIR", help="a benchmark's folder, e.g. results/mnist-holdout")
    tensorboard.add_argument("--to", required=True, metavar="LOGDIR", help="a new or empty folder for the event files")
    return parser


def _models_epilog(program: str) -> str:
    ours = [name for name in catalog.registered() if name not in STUDY_MODELS]
    examples = [("", "the laptop default: 3 models x 5 seeds"),
                (" --models approach1 --seeds 3 --epochs 2 --name try", "a quick look"),
                (" --config bench.yaml --seeds 10", "a config file's fields; flags override"),
                (" --address auto", "on a running Ray cluster")]
    width = max(len(program + flags) for flags, _ in examples) + 2
    lines = [f"  {(program + flags).ljust(width)}# {note}" for flags, note in examples]
    return (f"models: {', '.join(STUDY_MODELS)} (the study's), {', '.join(ours)} (ours); "
            "`reducecnn models` prints their sizes.\nexamples:\n" + "\n".join(lines))


def add_benchmark_flags(parser: argparse.ArgumentParser, program: str = "reducecnn benchmark") -> None:
    """Flags of `reducecnn benchmark` and jobs/benchmark.py."""
    parser.epilog = _models_epilog(program)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--config", help="YAML, JSON or TOML file with the same fields (flags override it)")
    parser.add_argument("--models", type=_csv, help="comma-separated model names (default baseline,approach1,approach2), "
                        "or your own builders as file.py:function or package.module:function")
    seeds = parser.add_mutually_exclusive_group()
    seeds.add_argument("--seeds", type=int, help="number of seeds: 0..N-1 (default 5)")
    seeds.add_argument("--seed-list", type=_seed_list, help="explicit seeds, e.g. 0,3,7")
    add_spec_flags(parser, grid=True)
    parser.add_argument("--address", help="Ray cluster address (default $RAY_ADDRESS, else start a local Ray)")
    parser.add_argument("--cpus-per-run", type=float, help="CPUs per run = its TensorFlow threads (default 1)")
    parser.add_argument("--gpus-per-run", type=float, help="train on GPUs: each group trainer holds min(this, 1) "
                        "GPU, single runs this many (2+: MirroredStrategy); waits for an autoscaler's GPU workers, "
                        "refused where none can come (default: a trainer per GPU the cluster has now, else CPUs)")
    parser.add_argument("--runs-per-task", type=int, help="train up to K seeds of one model and recipe as ONE "
                        "vectorized computation on a long-lived trainer (default: 64 on GPUs, 1 on CPUs)")
    parser.add_argument("--max-retries", type=int, help="retries of a run whose worker died (default 2)")
    parser.add_argument("--no-report", dest="report", action="store_const", const=False,
                        help="do not write the summary report at the end")
    parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)


_FLAG_FIELDS = ("models", "dataset", "protocol", "epochs", "batch_size", "patience", "learning_rate", "train_limit",
                "lr_schedule", "augment_shift", "data_dir", "name", "out", "address", "cpus_per_run", "gpus_per_run",
                "cpu_devices", "runs_per_task", "max_retries", "report")


def benchmark_values(args: argparse.Namespace) -> dict[str, Any]:
    """Config-file fields overridden by the flags that were given."""
    values = read_config_file(args.config) if args.config else {}
    values |= {name: getattr(args, name) for name in _FLAG_FIELDS if getattr(args, name, None) is not None}
    if args.seeds is not None:
        values["seeds"] = args.seeds  # a count, expanded by the config as a file's `seeds: N`
    if args.seed_list is not None:
        values["seeds"] = args.seed_list
    return values


def cmd_models(args: argparse.Namespace) -> int:
    """Print the size and cost of every registered model, or of the models given."""
    names = args.models or list(catalog.registered())
    unknown = [name for name in names if name not in catalog.registered() and not catalog.is_reference(name)]
    if unknown:
        raise UserError(unknown_model_message(unknown[0], catalog.registered()))
    try:
        users = {name: catalog.load_reference(name) for name in names if catalog.is_reference(name)}
    except catalog.ModelError as error:
        raise UserError(str(error)) from None
    devices.require_tensorflow("reducecnn models")
    devices.load()
    from reducecnn import models  # Keras: after devices.load() (see the top)

    rows = []
    for name in names:
        try:
            rows.append((users[name].name, models.check(users[name])) if name in users
                        else (name, models.describe(models.MODELS[name]())))
        except catalog.ModelError as error:
            raise UserError(str(error)) from None
    width = max(12, *(len(label) + 2 for label, _ in rows))
    print(f"{'model':<{width}}{'trainable':>11}{'non-train':>11}{'total':>10}{'layers':>8}{'MACs/image':>12}")
    for label, info in rows:
        print(f"{label:<{width}}{info.params_trainable:>11,}{info.params_non_trainable:>11,}{info.params_total:>10,}"
              f"{info.layers:>8}{info.macs_per_image:>12,}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train one spec in this process and write its record under OUT/NAME/."""
    devices.require_tensorflow("reducecnn train")
    fields = ("model", "seed", "dataset", "protocol", "epochs", "batch_size", "patience", "learning_rate",
              "train_limit", "lr_schedule", "augment_shift")
    values = {name: getattr(args, name) for name in fields if getattr(args, name) is not None}
    if catalog.is_reference(args.model):
        try:
            user = catalog.load_reference(args.model)
        except catalog.ModelError as error:
            raise UserError(str(error)) from None
        values |= {"model": user.name, "model_source": user.source}
    spec = make_run_spec(values)
    from reducecnn import api, data, store  # (see the top)

    api.check_models([args.model])
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads must be >= 1, got {args.threads}")
    dataset = data.load(spec.dataset, args.data_dir)
    location = store.locate(args.out or "results", args.name or "train")
    store.prepare(location)
    devices.load()
    from reducecnn import train  # Keras: after devices.load() (see the top)

    try:
        result = train.run(spec, data.split(dataset, spec.protocol, spec.train_limit),
                           threads=args.threads, cpu_devices=args.cpu_devices or 1)
    except train.RunFailed as error:
        result = RunResult(failed_record(spec, f"RunFailed: {error}"))
    record = with_fields(result.record, benchmark=args.name or "train")
    if not store.write_run(record, result.epochs, location):
        print(f"run {record.run_id} already has an ok record in {location.show('runs')}; kept it, "
              f"this {record.status} result was not written", file=sys.stderr)
        return 0 if record.status == "ok" else 1
    if record.status != "ok":
        print(f"run {record.run_id} failed: {record.error}", file=sys.stderr)
        return 1
    print(f"{record.run_id}: test accuracy {record.test_accuracy:.4f}, test loss {record.test_loss:.4f}, "
          f"{logs.plural(record.epochs_run, 'epoch')}, {record.train_seconds:.1f} s, {record.strategy} x{record.replicas} "
          f"on {record.devices} -> {location.show('runs')}"
          + logs.chance_hint(record.test_accuracy))
    return 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    """Validate everything, then run the benchmark on Ray and report."""
    config = make_benchmark_config(benchmark_values(args))
    from reducecnn import api  # (see the top)

    outcome = api.run_config(config)
    location = outcome.location
    print(f"{logs.plural(outcome.total, 'run')}: {outcome.skipped} already recorded, {outcome.ok} trained ok, "
          f"{outcome.failed} failed "
          f"in {outcome.wall_seconds:.0f} s; records in {location.show('runs')}", file=sys.stderr)
    if config.report:
        _report([location.show()], margin=0.5)
    if outcome.failed:
        print(f"error: {logs.plural(outcome.failed, 'run')} of {outcome.total} failed (status='failed' rows say why)",
              file=sys.stderr)
        return 1
    return 0


def _report(results_dirs: list[str], margin: float, into: str | None = None, show_markdown: bool = False) -> str:
    """Write the summary report of one or more results folders (local or s3://...); print (the
    report, then) where it went and the verdicts; returns the summary.md path or URI."""
    from reducecnn import api, report  # (see the top)

    written = api.write_report(results_dirs, margin, into)
    for warning in written.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if show_markdown:
        print(written.markdown)
    print(f"report: {written.summary}")
    for line in report.verdict_lines(written.runs, margin / 100):
        print(f"  {line}")
    return written.summary


def _check_results_dir(results_dir: str) -> list[str]:
    """UserError when a results folder is missing; the benchmarks inside it when it holds
    benchmarks rather than runs; [] when it is a benchmark's folder."""
    from reducecnn import api, store  # (see the top)

    if not store.is_uri(results_dir) and not os.path.isdir(results_dir):
        raise UserError(f"results folder {results_dir} does not exist")
    if api.has_runs(results_dir):
        return []
    inside = api.benchmarks_in(results_dir)
    if not inside:
        raise UserError(f"no runs/ folder in {results_dir}: not a benchmark's results (nor a folder of them)")
    return inside


def cmd_report(args: argparse.Namespace) -> int:
    """`reducecnn report DIR [DIR ...] [--into OUT]`; a folder of benchmarks lists them."""
    if not 0 < args.margin <= 10:
        raise UserError(f"--margin is in percentage points and must lie in (0, 10], got {args.margin:g}")
    listings = {results_dir: _check_results_dir(results_dir) for results_dir in args.results_dirs}
    if len(args.results_dirs) == 1 and listings[args.results_dirs[0]]:
        [(folder, inside)] = listings.items()
        example = f"{folder.rstrip('/')}/{inside[0]}"
        print(f"{folder} holds {logs.plural(len(inside), 'benchmark')}; report one with `reducecnn report "
              f"{example}`, or several with --into OUT:")
        for name in inside:
            print(f"  {folder.rstrip('/')}/{name}")
        return 0
    for folder, inside in listings.items():
        if inside:
            raise UserError(f"{folder} holds benchmarks, not runs: {', '.join(inside)}; name them one by one")
    if len(args.results_dirs) > 1 and not args.into:
        raise UserError("several results folders need --into OUT for the combined report")
    _report(args.results_dirs, args.margin, args.into, show_markdown=True)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """`reducecnn export tensorboard RESULTS_DIR --to LOGDIR`."""
    from reducecnn import export  # tensorboardX (0.3 s): only for this command

    if not os.path.isdir(args.results_dir):
        raise UserError(f"results folder {args.results_dir} does not exist")
    count = export.export_folder(args.results_dir, args.to)
    print(f"{logs.plural(count, 'run')} exported to {args.to}; view them with: tensorboard --logdir {args.to}")
    return 0


COMMANDS = {"models": cmd_models, "train": cmd_train, "benchmark": cmd_benchmark, "report": cmd_report,
            "export": cmd_export}


def main(argv: Sequence[str] | None = None, parser: argparse.ArgumentParser | None = None) -> int:
    """Entry point: one-line errors with exit 2 for bad input, 1 when runs failed."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = parser or build_parser()
    args = parser.parse_args(argv)
    logs.set_verbose(getattr(args, "verbose", False) or logs.verbose())
    command = COMMANDS[getattr(args, "command", None) or "benchmark"]
    try:
        return command(args)
    except UserError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted; finished runs are recorded, rerun the same command to resume",
              file=sys.stderr)
        return 130


def benchmark_main(argv: Sequence[str] | None = None) -> int:
    """jobs/benchmark.py: the benchmark subcommand as a standalone program."""
    parser = _Parser(prog="benchmark.py", description="Train the study's models x seeds as Ray tasks, "
                     "record one Parquet row per run, and write the summary report.")
    add_benchmark_flags(parser, "python jobs/benchmark.py")
    return main(argv, parser)
