"""Running a command with its stdout and stderr on a pseudo-terminal, as a user at a shell would."""
import fcntl
import os
import pty
import select
import struct
import subprocess
import termios
import time
from typing import Dict, List, Optional, Tuple


def run_on_terminal(cmd: List[str], env: Dict[str, str], cwd: Optional[str] = None,
                    timeout: float = 300.0) -> Tuple[int, str]:
    """The exit status and everything the command wrote to its terminal."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))  # 30 x 120, a usual terminal
    process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env, cwd=cwd,
                               start_new_session=True)
    os.close(slave)
    chunks = []  # type: List[bytes]
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if select.select([master], [], [], 1.0)[0]:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every writer has closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
        else:
            raise AssertionError("{} did not end within {} s".format(cmd, timeout))
        return process.wait(timeout=60), b"".join(chunks).decode("utf-8", "replace")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)
