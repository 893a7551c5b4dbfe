"""The GPU's share of a Jetson's RAM from the kernel's /proc/meminfo (exporter/sources/meminfo.py), on a real
Jetson's meminfo (an AGX Xavier's, NvMapMemUsed 805068 kB) under a fake procfs root."""
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from exporter.cli import build_sources
from exporter.config import load
from exporter.sources.base import SourceDown
from exporter.sampler import Sampler
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


@settings(max_examples=40, deadline=None)
@given(used_kib=st.integers(0, 2 ** 40), total_kib=st.integers(1, 2 ** 40))
def test_the_gpus_share_is_exposed_only_within_the_ram_the_same_file_counts(tmp_path_factory, used_kib, total_kib):
    """A meminfo with NvMapMemUsed above MemTotal (a misread, or a hostile procfs root) is never exposed: the
    ranges table's AT_MOST, checked at the exposition boundary like tegrastats' and jtop's RAM."""
    root = tmp_path_factory.mktemp("proc")
    (root / "meminfo").write_text("MemTotal:       {} kB\nMemFree:          1000 kB\nNvMapMemUsed:   {} kB\n"
                                  .format(total_kib, used_kib))
    source = MeminfoSource(str(root))
    sampler = Sampler([source], interval=1.0, timeout=5.0)
    sampler.sample_once(source)
    exposed = [s.value for s in sampler.snapshot() if s.name == "edgescope_gpu_memory_bytes"]
    rejected = [s.value for s in sampler.snapshot() if s.name == "edgescope_source_rejected_samples_total"]
    assert exposed == ([used_kib * 1024] if used_kib <= total_kib else [])
    assert rejected == [0.0 if used_kib <= total_kib else 1.0]
