"""What every test that runs a real process needs: a free loopback port, the
environment a child `python -m ...` needs to import this checkout, and a stop
that never leaves a process behind."""
import os
import random
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Dict, Set

import requests

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


EPHEMERAL_PORTS = "/proc/sys/net/ipv4/ip_local_port_range"
_handed_out = set()  # type: Set[int]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now, never handed out before by this process, and below the kernel's
    ephemeral range: a port the OS picks for ``bind(0)`` comes from that range, from which every outgoing
    connection (a scrape, a test's request) takes its own local port too, so one could hold it before the child
    that was given it binds (CI: a trainer's metrics port "Address already in use"). Picked at random, so that
    test processes running side by side rarely try the same one."""
    try:
        with open(EPHEMERAL_PORTS) as f:
            first_ephemeral = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        first_ephemeral = 0
    for _ in range(200):
        port = random.randrange(10000, first_ephemeral) if first_ephemeral > 12000 else 0
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            port = int(sock.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise RuntimeError("no free loopback port below {} after 200 tries".format(first_ephemeral))


def child_env() -> Dict[str, str]:
    """This checkout first on PYTHONPATH; one torch thread, so that a child's
    training leaves the other core of a 2-core machine to the rest."""
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def stop_process(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout``. A process started with
    ``start_new_session=True`` is stopped with its whole group: a wrapper such as faketime forks the
    program that does the work, and stopping the wrapper alone would leave that one running."""
    if process.poll() is not None:
        return
    try:
        group = os.getpgid(process.pid) == process.pid
    except ProcessLookupError:
        group = False

    def send(signum: int) -> None:
        try:
            os.killpg(process.pid, signum) if group else process.send_signal(signum)
        except ProcessLookupError:
            pass
    send(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        process.wait()


def wait_http_ok(process: subprocess.Popen, url: str, timeout: float) -> bool:
    """Polls ``url`` until it answers 200 (True), the process exits or
    ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return True
        except requests.RequestException:
            pass
        time.sleep(0.1)
    return False


def log_tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a child's log file ("" before it exists)."""
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
