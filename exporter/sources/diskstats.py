"""Disk I/O from /proc/diskstats: node_exporter counters and iostat -x gauges.

/proc/diskstats fields after major, minor, name (kernel Documentation/admin-guide/iostats.rst):
  1 reads completed, 2 reads merged, 3 sectors read, 4 ms reading,
  5 writes completed, 6 writes merged, 7 sectors written, 8 ms writing,
  9 I/Os in progress, 10 ms doing I/O, 11 weighted ms doing I/O, ...
A sector here is always 512 bytes. The gauges are computed exactly as
sysstat's iostat does over the last sampling interval, with the interval
measured on the monotonic clock:
  r/s = d(reads)/dt, rkB/s = d(sectors read)*512/1024/dt,
  r_await = d(ms reading)/d(reads) (0 without reads), %util = d(ms doing I/O)/dt/10.

Each --dataset is mapped to the whole disk holding its filesystem
(edgescope_dataset_disk_info), so that the report counts that disk's reads
and not every disk's: a dm-crypt/LVM/md volume and the disks under it would
otherwise count the same bytes twice.
"""
import os
import re
import time
from typing import Dict, List, Optional, Sequence, Tuple

from exporter.metrics import Sample
from exporter.sources.base import Source, SourceDown, read_text, sysfs

SECTOR_BYTES = 512
# Whole disks only: partitions (sda1, vda1, mmcblk0p1, nvme0n1p1), eMMC boot/rpmb
# areas, and loop / ram / zram devices are excluded.
DEFAULT_EXCLUDE = r"^(ram|zram|loop)\d+$|^(sd|vd|xvd|hd)[a-z]+\d+$|^(mmcblk\d+|nvme\d+n\d+)p\d+$|^mmcblk\d+(boot\d+|rpmb)$"

Stats = Tuple[int, int, int, int, int, int, int]  # reads, sectors read, ms reading, writes, sectors written, ms writing, ms io


def parse_diskstats(text: str) -> Dict[str, Stats]:
    out = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) < 14:
            continue
        n = [int(x) for x in f[3:14]]
        out[f[2]] = (n[0], n[2], n[3], n[4], n[6], n[7], n[9])
    return out


def disk_of(path: str, sysfs_root: str = "/sys") -> Optional[str]:
    """The whole block device holding ``path``'s filesystem, as /proc/diskstats
    names it: st_dev -> /sys/dev/block/MAJ:MIN, and a partition's parent disk
    (a dm-* or md* device has no `partition` file: it is itself the top device).
    None when the filesystem is on no block device (tmpfs, overlay, NFS, btrfs)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    node = sysfs(sysfs_root, "dev", "block", "{}:{}".format(os.major(st.st_dev), os.minor(st.st_dev)))
    if not os.path.exists(node):
        return None
    node = os.path.realpath(node)
    if os.path.exists(os.path.join(node, "partition")):
        node = os.path.dirname(node)
    return os.path.basename(node)


class DiskstatsSource(Source):
    name = "diskstats"

    def __init__(self, procfs_root: str = "/proc", exclude: str = DEFAULT_EXCLUDE, sysfs_root: str = "/sys",
                 datasets: Sequence[str] = ()) -> None:
        self._path = sysfs(procfs_root, "diskstats")
        self._exclude = re.compile(exclude)
        self._sysfs_root = sysfs_root
        self._datasets = list(datasets)
        self._last = None  # type: Optional[Tuple[float, Dict[str, Stats]]]

    def read(self) -> Dict[str, Stats]:
        try:
            text = read_text(self._path)
        except OSError as e:
            raise SourceDown("cannot read {}: {}".format(self._path, e.strerror or e))
        return {k: v for k, v in parse_diskstats(text).items() if not self._exclude.search(k)}

    def sample(self) -> List[Sample]:
        t, now = time.monotonic(), self.read()
        out = []
        for disk, s in sorted(now.items()):
            lab = {"disk": disk}
            out += [
                Sample("edgescope_disk_reads_completed_total", lab, s[0]),
                Sample("edgescope_disk_read_bytes_total", lab, s[1] * SECTOR_BYTES),
                Sample("edgescope_disk_read_time_seconds_total", lab, s[2] / 1000.0),
                Sample("edgescope_disk_writes_completed_total", lab, s[3]),
                Sample("edgescope_disk_written_bytes_total", lab, s[4] * SECTOR_BYTES),
                Sample("edgescope_disk_io_time_seconds_total", lab, s[6] / 1000.0),
            ]
        if self._last is not None:
            t0, before = self._last
            dt = t - t0
            for disk, s in sorted(now.items()):
                p = before.get(disk)
                if p is None or dt <= 0:
                    continue
                lab = {"disk": disk}
                reads = s[0] - p[0]
                out += [
                    Sample("edgescope_disk_read_iops", lab, reads / dt),
                    Sample("edgescope_disk_read_bytes_per_second", lab, (s[1] - p[1]) * SECTOR_BYTES / dt),
                    Sample("edgescope_disk_read_await_seconds", lab, (s[2] - p[2]) / 1000.0 / reads if reads else 0.0),
                    Sample("edgescope_disk_utilisation_ratio", lab, min(1.0, (s[6] - p[6]) / 1000.0 / dt)),
                ]
        self._last = (t, now)
        return out + self.dataset_disks()

    def dataset_disks(self) -> List[Sample]:
        """edgescope_dataset_disk_info for every dataset on a block device (resolved
        at each sample: a disk may be mounted or replaced while the exporter runs)."""
        out = []
        for dataset in self._datasets:
            disk = disk_of(dataset, self._sysfs_root)
            if disk is not None:
                out.append(Sample("edgescope_dataset_disk_info", {"dataset": dataset, "disk": disk}, 1.0))
        return out
