"""The GPU's share of a Jetson's RAM from the kernel, where jtop is not the power source.

A Jetson's GPU has no memory of its own: what it holds is RAM the nvmap driver mapped for it, which L4T's
kernel counts in /proc/meminfo as ``NvMapMemUsed:  805068 kB`` (jtop reads the same line). Kernels without
nvmap (any other machine, some JetPack 6 kernels) have no such line: then this source says nothing, which is
not a fault.
"""
import os
import re
from typing import List

from exporter.metrics import Sample
from exporter.sources.base import Source, SourceDown, read_text

NVMAP_USED = re.compile(r"^NvMapMemUsed:\s+([0-9]+) kB$", re.M)
MEM_TOTAL = re.compile(r"^MemTotal:\s+([0-9]+) kB$", re.M)
KIB = 1024


class MeminfoSource(Source):
    name = "meminfo"

    def __init__(self, procfs_root: str) -> None:
        self.path = os.path.join(procfs_root, "meminfo")

    def sample(self) -> List[Sample]:
        try:
            text = read_text(self.path)
        except OSError as e:
            raise SourceDown("cannot read {}: {}".format(self.path, e.strerror or e))
        found, total = NVMAP_USED.search(text), MEM_TOTAL.search(text)
        # the GPU's share is RAM: never above the RAM the same file counts (checked at the exposition boundary)
        self.totals = {"edgescope_memory_total_bytes": int(total.group(1)) * KIB} if total else {}
        return [Sample("edgescope_gpu_memory_bytes", {}, int(found.group(1)) * KIB)] if found else []
