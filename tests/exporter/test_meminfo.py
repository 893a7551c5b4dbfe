"""The GPU's share of a Jetson's RAM from the kernel's /proc/meminfo (exporter/sources/meminfo.py), on a real
Jetson's meminfo (an AGX Xavier's, NvMapMemUsed 805068 kB) under a fake procfs root."""
import shutil
from pathlib import Path

import pytest

from exporter.cli import build_sources
from exporter.config import load
from exporter.sources.base import SourceDown
from exporter.sources.meminfo import MeminfoSource

XAVIER = Path(__file__).parent / "fixtures" / "meminfo_xavier.txt"


def test_the_kernels_nvmap_line_is_the_gpus_memory(tmp_path):
    shutil.copy(XAVIER, tmp_path / "meminfo")
    (sample,) = MeminfoSource(str(tmp_path)).sample()
    assert (sample.name, sample.labels, sample.value) == ("edgescope_gpu_memory_bytes", {}, 805068 * 1024)


def test_a_kernel_without_nvmap_says_nothing_and_a_missing_file_says_why(tmp_path):
    (tmp_path / "meminfo").write_text("".join(line for line in XAVIER.read_text().splitlines(True)
                                              if not line.startswith("NvMap")))
    assert MeminfoSource(str(tmp_path)).sample() == []
    with pytest.raises(SourceDown, match="cannot read .*/nowhere/meminfo"):
        MeminfoSource(str(tmp_path / "nowhere")).sample()


def test_the_exporter_reads_it_unless_jtop_gives_it(tmp_path):
    names = lambda cfg: [s.name for s in build_sources(cfg)]  # noqa: E731
    base = load([])
    assert "meminfo" in names(dict(base, **{"power-source": "none"}))
    assert "meminfo" not in names(dict(base, **{"power-source": "jtop", "jtop-socket": str(tmp_path / "jtop.sock")}))
