"""Slow storage on this machine, for benchmarks and tests: a cgroup v1 blkio group whose processes (and their
children) read a disk at most N bytes/s, and an ext4 loop disk of its own so that only a dataset's reads are
throttled, not the interpreter's and torch's (the root disk holds them too). Needs root; torch-free."""
import contextlib
import os
import shutil
import signal
import subprocess
import time
from typing import Callable, Iterator, List, Optional, Tuple

BLKIO = "/sys/fs/cgroup/blkio"
LOOP_TOOLS = ("losetup", "mkfs.ext4", "mount", "umount")


def unavailable(loop: bool = True) -> Optional[str]:
    """Why a throttled disk cannot be had here (None: it can)."""
    if os.geteuid() != 0:
        return "needs root (blkio cgroups, losetup and mount)"
    if not os.path.isfile(os.path.join(BLKIO, "blkio.throttle.read_bps_device")):
        return "needs cgroup v1 blkio mounted at {}".format(BLKIO)
    missing = [tool for tool in LOOP_TOOLS if loop and not shutil.which(tool)]
    if missing:
        return "needs {} (scripts/install-deps.sh)".format(", ".join(missing))
    return None


def whole_disk(path: str) -> str:
    """``major:minor`` of the whole disk holding ``path``'s file system (blkio throttles disks, not partitions)."""
    dev = os.stat(path).st_dev
    sysfs = os.path.realpath("/sys/dev/block/{}:{}".format(os.major(dev), os.minor(dev)))
    if not os.path.isdir(sysfs):
        raise OSError("{} is not on a block device (tmpfs, overlay?)".format(path))
    if os.path.isfile(os.path.join(sysfs, "partition")):
        sysfs = os.path.dirname(sysfs)
    with open(os.path.join(sysfs, "dev")) as f:
        return f.read().strip()


def set_read_bps(group: str, path: str, bps: int) -> None:
    """Reads of the group's processes from the disk holding ``path``: at most ``bps`` bytes/s from now on."""
    with open(os.path.join(group, "blkio.throttle.read_bps_device"), "w") as f:
        f.write("{} {}\n".format(whole_disk(path), int(bps)))


def joiner(group: str) -> Callable[[], None]:
    """A ``preexec_fn`` for subprocess: the child enters ``group`` before it runs (its children inherit it)."""
    def enter() -> None:
        with open(os.path.join(group, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))
    return enter


@contextlib.contextmanager
def throttled_group(path: str, bps: int, name: str = "edgescope") -> Iterator[str]:
    """A blkio group reading at most ``bps`` from the disk holding ``path``; at exit the processes left in it
    (the caller started them there) are killed and the group removed."""
    with v1_group(BLKIO, "{}-{}".format(name, os.getpid())) as group:
        set_read_bps(group, path, bps)
        yield group


@contextlib.contextmanager
def v1_group(controller: str, name: str, settings: Optional[List[Tuple[str, str]]] = None) -> Iterator[str]:
    """A new cgroup v1 group ``name`` under the ``controller``'s mount, its files written with ``settings``
    ((file, value), in order); at exit the processes left in it are killed and the group removed."""
    group = os.path.join(controller, name)
    os.mkdir(group)
    try:
        for file, value in settings or []:
            with open(os.path.join(group, file), "w") as f:
                f.write(value + "\n")
        yield group
    finally:
        deadline = time.monotonic() + 30
        while True:  # rmdir needs an empty group
            with open(os.path.join(group, "cgroup.procs")) as f:
                left = [int(pid) for pid in f.read().split()]
            if not left or time.monotonic() > deadline:
                break
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
        os.rmdir(group)


@contextlib.contextmanager
def loop_disk(folder: str, size_bytes: int) -> Iterator[str]:
    """A fresh ext4 file system of ``size_bytes`` on a loop device, mounted at ``folder``/disk (the image is
    ``folder``/disk.img); unmounted and detached at exit."""
    image, mount_point = os.path.join(folder, "disk.img"), os.path.join(folder, "disk")
    os.makedirs(mount_point, exist_ok=True)
    with open(image, "wb") as f:
        f.truncate(size_bytes)
    subprocess.run(["mkfs.ext4", "-q", "-F", image], check=True)
    loop = subprocess.run(["losetup", "--find", "--show", image], check=True, capture_output=True,
                          text=True).stdout.strip()
    try:
        subprocess.run(["mount", loop, mount_point], check=True)
        try:
            yield mount_point
        finally:
            subprocess.run(["umount", mount_point])
    finally:
        subprocess.run(["losetup", "-d", loop])
        os.unlink(image)
