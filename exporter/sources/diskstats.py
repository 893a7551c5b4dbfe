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
"""
import re
import time
from typing import Dict, List, Optional, Tuple

from exporter.metrics import Sample
from exporter.sources.base import Source, SourceDown, sysfs

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


class DiskstatsSource(Source):
    name = "diskstats"

    def __init__(self, procfs_root: str = "/proc", exclude: str = DEFAULT_EXCLUDE) -> None:
        self._path = sysfs(procfs_root, "diskstats")
        self._exclude = re.compile(exclude)
        self._last = None  # type: Optional[Tuple[float, Dict[str, Stats]]]

    def read(self) -> Dict[str, Stats]:
        try:
            with open(self._path) as f:
                text = f.read()
        except OSError as e:
            raise SourceDown("cannot read {}: {}".format(self._path, e.strerror))
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
        return out
