"""The package's import graph, layer by layer, and the rules it keeps (read from the source, nothing
imported): `python -m tools.imports`. Exit 1, naming each breach, when a rule is broken;
tests/test_layers.py holds the same rules.

- A module imports package modules of its own layer and of the layers its layer uses (USES):
  the store never imports a trainer, the report never the runner, nothing imports the front.
- Only the execution layer imports Ray; only trainers import Keras, TensorFlow or JAX.
- Trainers import Keras at their top; `devices.load` is the one place it is first imported.
- Every import inside a function says why on its line or the line above (a measured start-up
  saving or an optional dependency), and no module uses another's private names.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "reducecnn"
# In the order data flows: a spec is planned, trained, recorded, stored, aggregated and reported.
LAYERS = {
    "ground": ("logs", "catalog", "config", "data"),
    "planning": ("plan",),
    "records": ("records",),
    "trainers": ("devices", "recipe", "models", "stacked", "vectorized", "train"),
    "store": ("store",),
    "execution": ("worker", "runner"),
    "report": ("aggregate", "htmlreport", "report", "export"),
    "front": ("api", "cli", "__main__", "__init__"),
}
# The layers each layer's modules may import (besides their own layer's).
USES = {
    "ground": (),
    "planning": ("ground",),
    "records": ("ground",),
    "trainers": ("ground", "planning", "records"),
    "store": ("ground", "records"),
    "execution": ("ground", "planning", "records", "trainers", "store"),
    "report": ("ground", "records", "store"),
    "front": ("ground", "planning", "records", "trainers", "store", "execution", "report"),
}
FRAMEWORKS = {"ray": "execution", "keras": "trainers", "tensorflow": "trainers", "jax": "trainers"}
# The exceptions, each with its reason: Keras's own download is data's last resort (no internet, no Keras needed).
ALLOWED = {("data", "keras"): "the last-resort MNIST download"}


@dataclass
class Module:
    name: str
    layer: str
    top: set[str] = field(default_factory=set)        # package modules imported at the top
    inner: set[str] = field(default_factory=set)      # ... inside functions
    frameworks: dict[str, str] = field(default_factory=dict)  # framework -> "top" or "inner"
    breaches: list[str] = field(default_factory=list)


def layer_of(module: str) -> str:
    return next(layer for layer, names in LAYERS.items() if module in names)


def _imported(node: ast.Import | ast.ImportFrom) -> list[tuple[str, list[str]]]:
    """(dotted module, names) pairs of one import statement."""
    if isinstance(node, ast.Import):
        return [(alias.name, []) for alias in node.names]
    return [(node.module or "", [alias.name for alias in node.names])]


def _package_modules(dotted: str, names: list[str]) -> list[str]:
    """The package modules an import names: `reducecnn.x` or `from reducecnn import x, y`."""
    parts = dotted.split(".")
    if parts[0] != "reducecnn":
        return []
    if len(parts) > 1:
        return [parts[1]]
    return [name for name in names if (PACKAGE / f"{name}.py").is_file()] or ["__init__"]


def read(path: Path) -> Module:
    """One module's imports and the breaches of the rules in them."""
    source = path.read_text(encoding="utf-8")
    lines, tree = source.splitlines(), ast.parse(source)
    module = Module(path.stem, layer_of(path.stem))
    inside = {id(node) for function in ast.walk(tree) if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef))
              for node in ast.walk(function) if isinstance(node, (ast.Import, ast.ImportFrom))}
    aliases: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)) or (isinstance(node, ast.ImportFrom) and node.level):
            continue
        where = "inner" if id(node) in inside else "top"
        guarded = _type_checking_only(tree, node)
        for dotted, names in _imported(node):
            root = dotted.split(".")[0]
            for name in names:
                if name.startswith("_") and not name.endswith("__") and root == "reducecnn":
                    module.breaches.append(f"{path.name}:{node.lineno} imports a private name {name} of {dotted}")
            for other in _package_modules(dotted, names):
                (module.top if where == "top" else module.inner).add(other)
                aliases.add(other)
                theirs = layer_of(other)
                if other != "__init__" and theirs not in (module.layer, *USES[module.layer]) and not guarded:
                    module.breaches.append(f"{path.name}:{node.lineno} imports {other}: the {module.layer} "
                                           f"layer does not use the {theirs} layer")
            if root in FRAMEWORKS and not guarded:
                module.frameworks.setdefault(root, where)
                if FRAMEWORKS[root] != module.layer and (module.name, root) not in ALLOWED:
                    module.breaches.append(f"{path.name}:{node.lineno} imports {root}: only the {FRAMEWORKS[root]} "
                                           "layer may")
        if where == "inner" and not _has_reason(lines, node.lineno):
            module.breaches.append(f"{path.name}:{node.lineno} imports inside a function without a reason "
                                   "(a comment on its line or the line above)")
    if module.layer == "trainers" and module.name != "devices" and module.frameworks.get("keras") == "inner":
        module.breaches.append(f"{path.name} imports Keras inside a function: trainers import it at their top")
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                and isinstance(node.value, ast.Name) and node.value.id in aliases - {module.name}):
            module.breaches.append(f"{path.name}:{node.lineno} uses {node.value.id}.{node.attr}, a private name")
    return module


def _type_checking_only(tree: ast.Module, node: ast.AST) -> bool:
    """Under `if TYPE_CHECKING:` (annotations only, never run)."""
    return any(isinstance(block, ast.If) and getattr(block.test, "id", "") == "TYPE_CHECKING"
               and node in ast.walk(block) for block in tree.body)


def _has_reason(lines: list[str], lineno: int) -> bool:
    here, above = lines[lineno - 1], lines[lineno - 2].strip() if lineno > 1 else ""
    return "#" in here or above.startswith("#")


def graph() -> list[Module]:
    """Every module of the package, in layer order."""
    modules = {path.stem: read(path) for path in PACKAGE.glob("*.py")}
    return [modules[name] for names in LAYERS.values() for name in names if name in modules]


def unplaced() -> list[str]:
    """Modules of the package that no layer lists."""
    placed = {name for names in LAYERS.values() for name in names}
    return sorted(path.stem for path in PACKAGE.glob("*.py") if path.stem not in placed)


def main() -> int:
    modules, breaches = graph(), [f"{name}.py is in no layer (tools/imports.py LAYERS)" for name in unplaced()]
    for layer in LAYERS:
        print(f"{layer} (uses {', '.join(USES[layer]) or 'nothing'}):")
        for module in (m for m in modules if m.layer == layer):
            uses = sorted(module.top - {"__init__"}) + [f"({name})" for name in sorted(module.inner - module.top)]
            frameworks = [name if where == "top" else f"({name})" for name, where in sorted(module.frameworks.items())]
            print(f"  {module.name:<11} -> {', '.join(uses) or '-'}"
                  + (f"   [{', '.join(frameworks)}]" if frameworks else ""))
            breaches += module.breaches
    print("(parenthesised: imported inside a function, with its reason; [brackets]: frameworks)")
    for breach in breaches:
        print(f"breach: {breach}", file=sys.stderr)
    return 1 if breaches else 0


if __name__ == "__main__":
    sys.exit(main())
