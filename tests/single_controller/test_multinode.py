"""Joining clusters: a two-node cluster made on this machine, and a `ray start --head` with token auth."""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.single_controller.roles import EchoWorker
from verlvl.single_controller import RayClassWithInitArgs, RayResourcePool, RayWorkerGroup
from verlvl.single_controller.worker import pick_free_port
from verlvl.utils.ray_init import init_ray

pytestmark = pytest.mark.slow
RAY_BIN = str(Path(sys.executable).with_name("ray"))


def test_group_spreads_over_two_nodes_joined_through_ray_address(two_node_cluster):
    summary = init_ray()  # no address given: RAY_ADDRESS names the cluster
    assert summary["nodes"] == 2
    pool = RayResourcePool([1, 1], use_gpu=False)
    group = RayWorkerGroup(pool, RayClassWithInitArgs(EchoWorker))
    info = group.worker_info
    assert len({i["node_id"] for i in info}) == 2  # one worker on each node
    assert [i["rank"] for i in info] == [0, 1]
    assert sorted(info, key=lambda i: (i["node_ip"], i["node_id"])) == info  # ranks follow node order
    assert group.all_reduce(1.0) == [3.0, 3.0]  # gloo across the two nodes
    group.shutdown()
    pool.release()


def _kill_processes_mentioning(text: str) -> None:
    """Stop only the Ray processes this test started (`ray stop` would stop every cluster here)."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text in cmdline.read_bytes().decode(errors="replace"):
                os.kill(int(cmdline.parent.name), signal.SIGKILL)
        except (OSError, ValueError):
            pass


def _wait_for_port(port: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise TimeoutError(f"the Ray head did not open port {port}")


def test_join_cli_head_with_token_auth_by_explicit_address(tmp_path):
    """Ray 2.60 heads may enforce token auth: an explicit address must still join."""
    home = tmp_path / "home"
    home.mkdir()
    temp_dir = tempfile.mkdtemp(prefix="verlvl_ray_", dir="/tmp")
    env = dict(os.environ, HOME=str(home), RAY_AUTH_MODE="token")
    env.pop("RAY_ADDRESS", None)
    subprocess.run([RAY_BIN, "get-auth-token", "--generate"], env=env, check=True, capture_output=True)
    port = pick_free_port()
    head = subprocess.Popen([RAY_BIN, "start", "--head", f"--port={port}", "--num-cpus=1", "--block",
                             f"--temp-dir={temp_dir}", "--include-dashboard=false"],
                            env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_port(port)
        client_env = dict(os.environ, HOME=str(home), RAY_ADDRESS=f"127.0.0.1:{port}")
        client_env.pop("RAY_AUTH_MODE", None)  # the user did not set it: init_ray must cope
        code = "from verlvl.utils.ray_init import init_ray; print('SUMMARY', init_ray())"
        deadline = time.monotonic() + 60
        while True:  # the head may still be starting
            out = subprocess.run([sys.executable, "-c", code], env=client_env, capture_output=True, text=True,
                                 timeout=120)
            if out.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert out.returncode == 0, out.stderr[-2000:]
        assert "SUMMARY {'nodes': 1" in out.stdout

        # Without the token the failure says what to do.
        nohome = tmp_path / "nohome"
        nohome.mkdir()
        out = subprocess.run([sys.executable, "-c", code], env=dict(client_env, HOME=str(nohome)),
                             capture_output=True, text=True, timeout=180)
        assert out.returncode != 0
        assert "could not join the Ray cluster" in out.stderr and "auth_token" in out.stderr
    finally:
        os.killpg(head.pid, signal.SIGKILL)
        head.wait()
        _kill_processes_mentioning(temp_dir)
