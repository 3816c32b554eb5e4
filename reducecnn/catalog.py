"""Which models exist, known without Keras: the registered names (read from models.py's source)
and users' references (`file.py:function` or `package.module:function`, read, never executed).

Listing and validating names stays instant this way: Keras with TensorFlow takes 5.7 s to
import here, and bad input must fail before that.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10


class ModelError(ValueError):
    """A model reference that cannot be used: one line saying why."""


@dataclass(frozen=True)
class UserModel:
    """A user's builder: its function name (the runs' `model`) and its module's source text,
    which travels with every run to the workers and is part of the run id."""

    reference: str
    name: str
    source: str


@functools.cache
def registered() -> tuple[str, ...]:
    """The names of models.py's `@register` builders, in their order there (the registry itself,
    `models.MODELS`, needs Keras; tests hold the two equal)."""
    tree = ast.parse(resources.files("reducecnn").joinpath("models.py").read_text(encoding="utf-8"))
    return tuple(node.name for node in tree.body if isinstance(node, ast.FunctionDef)
                 and any(isinstance(d, ast.Name) and d.id == "register" for d in node.decorator_list))


def is_reference(model: str) -> bool:
    """`file.py:function` or `package.module:function`, as opposed to a registered name."""
    return ":" in model


def load_reference(reference: str) -> UserModel:
    """Read a reference's source and check that it defines the function (nothing is executed)."""
    where, _, function = reference.rpartition(":")
    if not where or not function.isidentifier():
        raise ModelError(f"model {reference!r}: expected file.py:function or package.module:function")
    if where.endswith(".py") or "/" in where or "\\" in where:
        path = Path(where)
        if not path.is_file():
            raise ModelError(f"model {reference!r}: file {where} does not exist")
    else:
        try:
            found = importlib.util.find_spec(where)
        except (ImportError, ValueError):
            found = None
        if found is None or not found.origin or not found.origin.endswith(".py"):
            raise ModelError(f"model {reference!r}: no Python module {where} can be imported here")
        path = Path(found.origin)
    source = path.read_text(encoding="utf-8")
    try:
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as error:
        raise ModelError(f"model {reference!r}: {path} does not parse (line {error.lineno}: {error.msg})") from None
    defined = {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    defined |= {target.id for node in tree.body if isinstance(node, ast.Assign)
                for target in node.targets if isinstance(target, ast.Name)}
    if function not in defined:
        raise ModelError(f"model {reference!r}: {path} defines no function {function}")
    if function in registered():
        raise ModelError(f"model {reference!r}: {function} is a registered model's name; rename the function")
    return UserModel(reference, function, source)
