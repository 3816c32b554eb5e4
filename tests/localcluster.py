"""A real multi-node Ray cluster on this machine (`ray start --head` + `ray start --address`), for tests.

Each node runs `ray start --block` in its own process group with its own free ports and a
private temp dir, so stopping it ends exactly the processes it started (never `ray stop`,
which ends every Ray process on the machine).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _processes_mentioning(text: str) -> list[int]:
    """PIDs whose command line contains `text` (our private temp dir marks our cluster's processes)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if text in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


class LocalCluster:
    """Head plus worker nodes started with `ray start`, token authentication on, private ports."""

    def __init__(self, node_resources: list[dict[str, float]], cpus_per_node: int = 1):
        self.temp_dir = tempfile.mkdtemp(prefix="rc", dir="/tmp")  # short: unix socket paths <= 107 chars
        token_path = Path(self.temp_dir) / "auth_token"
        token_path.write_text(secrets.token_hex(32))
        self.env = os.environ | {
            "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_path),
            "RAY_USAGE_STATS_ENABLED": "0", "TF_CPP_MIN_LOG_LEVEL": "2",
            "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}",
        }
        self.env.pop("RAY_ADDRESS", None)
        self.gcs_port, self.dashboard_port = free_port(), free_port()
        self.address = f"127.0.0.1:{self.gcs_port}"
        self.dashboard_url = f"http://127.0.0.1:{self.dashboard_port}"
        self.nodes: list[subprocess.Popen] = []
        try:
            for index, resources in enumerate(node_resources):
                self._start_node(index == 0, resources, cpus_per_node)
            self._wait_for_nodes(len(node_resources))
        except BaseException:
            self.stop()
            raise

    def _start_node(self, head: bool, resources: dict[str, float], cpus: int) -> None:
        ports = ["--node-manager-port", free_port(), "--object-manager-port", free_port(),
                 "--dashboard-agent-listen-port", free_port(), "--dashboard-agent-grpc-port", free_port(),
                 "--metrics-export-port", free_port(), "--runtime-env-agent-port", free_port()]
        role = (["--head", "--port", self.gcs_port, "--dashboard-host", "127.0.0.1",
                 "--dashboard-port", self.dashboard_port, "--temp-dir", self.temp_dir]
                if head else ["--address", self.address])
        command = [str(VENV_BIN / "ray"), "start", "--block", "--node-ip-address", "127.0.0.1",
                   "--num-cpus", cpus, "--num-gpus", 0, "--resources", json.dumps(resources),
                   "--disable-usage-stats", *role, *ports]
        log = open(Path(self.temp_dir) / f"node{len(self.nodes)}.log", "wb")
        self.nodes.append(subprocess.Popen([str(part) for part in command], env=self.env, stdout=log,
                                           stderr=subprocess.STDOUT, start_new_session=True))

    def python(self, code: str, timeout: float = 120) -> str:
        """Run a Python snippet as a driver of this cluster; returns its stdout."""
        completed = subprocess.run([sys.executable, "-c", code], env=self.env | {"RAY_ADDRESS": self.address},
                                   capture_output=True, text=True, timeout=timeout)
        if completed.returncode != 0:
            raise RuntimeError(completed.stderr[-3000:])
        return completed.stdout

    def node_resources(self) -> dict[str, dict[str, float]]:
        """Alive node id -> its resources, as Ray reports them."""
        code = ("import json, ray; ray.init(address='auto', logging_level='ERROR'); "
                "print(json.dumps({n['NodeID']: n['Resources'] for n in ray.nodes() if n['Alive']}))")
        return json.loads(self.python(code).strip().splitlines()[-1])

    def _wait_for_nodes(self, count: int, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(node.poll() is not None for node in self.nodes):
                raise RuntimeError(f"a ray node exited early; logs in {self.temp_dir}")
            try:
                if len(self.node_resources()) == count:
                    return
            except (RuntimeError, subprocess.TimeoutExpired, json.JSONDecodeError, IndexError):
                pass
            time.sleep(2)
        raise TimeoutError(f"{count} ray nodes did not come up in {timeout} s; logs in {self.temp_dir}")

    def leftover_pids(self) -> list[int]:
        return _processes_mentioning(self.temp_dir)

    def stop(self) -> None:
        """End every process this cluster started: workers first, then the nodes' process groups."""
        for node in reversed(self.nodes):
            if node.poll() is None:
                os.killpg(node.pid, signal.SIGTERM)
        for node in self.nodes:
            try:
                node.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(node.pid, signal.SIGKILL)
                node.wait()
        deadline = time.monotonic() + 15
        while self.leftover_pids() and time.monotonic() < deadline:
            time.sleep(0.5)
        for pid in self.leftover_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.temp_dir, ignore_errors=True)
