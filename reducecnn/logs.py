"""Quiet by default: TensorFlow's C++ start-up lines and Ray's INFO/WARNING chatter are hidden
unless the user asks for them (`--verbose`, or REDUCECNN_VERBOSE=1 in the environment)."""

from __future__ import annotations

import logging
import os

VERBOSE_ENV = "REDUCECNN_VERBOSE"


def verbose() -> bool:
    """Did the user ask for the frameworks' own log lines?"""
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def set_verbose(on: bool) -> None:
    """Remember the choice for this process and the local processes it starts (Ray workers)."""
    os.environ[VERBOSE_ENV] = "1" if on else "0"


def ray_init_options() -> dict:
    """ray.init keywords: Ray's own log level, and whether workers' output reaches the driver."""
    loud = verbose()
    return {"logging_level": logging.INFO if loud else logging.ERROR, "log_to_driver": loud}


def plural(count: int, noun: str) -> str:
    """'1 run', '2 runs', '1 epoch', '0 epochs'."""
    return f"{count:,} {noun}" + ("" if count == 1 else "s")


CHANCE = 0.2  # test accuracy at or below this on ten classes: the run learned next to nothing


def chance_hint(test_accuracy: float | None) -> str:
    """A smoke run's batch-norm model predicts one class until its moving statistics settle."""
    if test_accuracy is None or test_accuracy > CHANCE:
        return ""
    return ("  (near chance: too few training steps; batch norm's moving statistics need a few hundred "
            "steps to settle, so use more epochs or a larger --train-limit)")
