"""The house's rules, read from the source (tools/imports.py): layers import only upwards, Ray
only in the execution layer, Keras only in trainers, every function-level import with a reason."""

from __future__ import annotations

import textwrap

from tools import imports


def _breaches(tmp_path, name: str, source: str) -> list[str]:
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    return imports.read(path).breaches


def test_the_package_keeps_its_rules():
    breaches = [breach for module in imports.graph() for breach in module.breaches]
    assert breaches == [] and imports.unplaced() == []


def test_only_the_execution_layer_imports_ray_and_only_trainers_keras():
    importers = {framework: {m.name for m in imports.graph() if framework in m.frameworks}
                 for framework in ("ray", "keras", "tensorflow", "jax")}
    assert importers["ray"] == {"runner", "worker"}
    for framework in ("keras", "tensorflow", "jax"):
        assert importers[framework] - {"data"} <= set(imports.LAYERS["trainers"])


def test_a_store_that_imports_a_trainer_is_a_breach(tmp_path):
    assert _breaches(tmp_path, "store", "from reducecnn import train\n") == [
        "store.py:1 imports train: the store layer does not use the trainers layer"]
    assert _breaches(tmp_path, "config", "from reducecnn.store import locate\n") == [
        "config.py:1 imports store: the ground layer does not use the store layer"]
    assert _breaches(tmp_path, "runner", "from reducecnn import store, train, plan\n") == []


def test_ray_outside_execution_and_keras_outside_trainers_are_breaches(tmp_path):
    assert _breaches(tmp_path, "report", "import ray\n") == ["report.py:1 imports ray: only the execution layer may"]
    assert _breaches(tmp_path, "plan", "from keras import ops\n") == [
        "plan.py:1 imports keras: only the trainers layer may"]


def test_a_function_level_import_needs_a_reason(tmp_path):
    bare = _breaches(tmp_path, "aggregate", "def f():\n    import json\n")
    assert bare == ["aggregate.py:2 imports inside a function without a reason (a comment on its line or the line above)"]
    assert _breaches(tmp_path, "aggregate", "def f():\n    import json  # why\n") == []


def test_a_trainer_imports_keras_at_its_top(tmp_path):
    assert _breaches(tmp_path, "stacked", "def f():\n    import keras  # late\n") == [
        "stacked.py imports Keras inside a function: trainers import it at their top"]


def test_private_names_of_other_modules_are_breaches(tmp_path):
    assert _breaches(tmp_path, "cli", "from reducecnn.train import _input\n") == [
        "cli.py:1 imports a private name _input of reducecnn.train"]
    assert _breaches(tmp_path, "cli", "from reducecnn import train\ntrain._input()\n") == [
        "cli.py:2 uses train._input, a private name"]


def test_the_graph_command_prints_every_layer_and_module(capsys):
    assert imports.main() == 0
    printed = capsys.readouterr().out
    assert all(f"{layer} (uses" in printed for layer in imports.LAYERS)
    assert all(f"  {module.name} " in printed for module in imports.graph())


def test_docs_code_md_shows_the_graph_as_it_is(capsys):
    imports.main()
    graph = "\n".join(capsys.readouterr().out.splitlines()[:-1])
    assert f"```\n{graph}\n```" in (imports.PACKAGE.parent / "docs" / "code.md").read_text()
