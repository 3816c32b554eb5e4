"""A local Ray started by the job listens on localhost only."""

from __future__ import annotations

import json
import os
import subprocess
import sys

CHECK_DASHBOARD = """
import json, ray
from reducecnn import runner

def listening_addresses(port):
    # /proc/net/tcp{,6}: local address as hex ip:port, state 0A = LISTEN.
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in open(table).read().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            ip, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.add(ip)
    return found

url = runner.connect(None)
port = int(url.rsplit(":", 1)[1])
ips = listening_addresses(port)
ray.shutdown()
print(json.dumps(sorted(ips)))
"""


def test_local_ray_binds_its_dashboard_to_localhost():
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"} | {"RAY_USAGE_STATS_ENABLED": "0"}
    completed = subprocess.run([sys.executable, "-c", CHECK_DASHBOARD], env=env, capture_output=True, text=True,
                               timeout=180)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert json.loads(completed.stdout.strip().splitlines()[-1]) == ["0100007F"]  # 127.0.0.1, nothing else
