"""trainer.mode: a power mode recorded as its hardware: nvpmodel.conf's table on a (fake) Orin NX, sysfs clocks,
cgroup v1 and v2 CPU quotas, and a real run's run_info and --results carrying the mode_* labels."""
import json
import math
import os

import pytest

from tests.exporter.conftest import make_orin_sysfs, write
from tests.trainer.conftest import small_run_args
from trainer import cli
from trainer.mode import MODE_LABELS, Mode, cgroup_quota_cores, current_mode, nvpmodel_mode, parse_nvpmodel_conf

CONF = os.path.join(os.path.dirname(os.path.dirname(__file__)), "exporter", "fixtures", "nvpmodel_orin_nx.conf")


def conf_text() -> str:
    with open(CONF) as f:
        return f.read()


def test_an_orin_nx_nvpmodel_conf_gives_each_modes_cores_and_clocks_in_hz():
    models = {m.name: m for m in parse_nvpmodel_conf(conf_text())}
    assert sorted((m.id, name) for name, m in models.items()) == [(0, "MAXN"), (1, "10W"), (2, "15W"), (3, "25W")]
    assert models["10W"].mode.labels() == Mode(4.0, math.nan, 1190400e3, 612e6, 2133e6).labels() == {
        "mode_cpu_cores": "4", "mode_cpu_max_hz": "1.1904e+09", "mode_gpu_max_hz": "6.12e+08",
        "mode_emc_max_hz": "2.133e+09"}
    assert models["25W"].mode.cpu_cores == 8 and models["25W"].mode.gpu_max_hz == 918e6
    maxn = models["MAXN"].mode  # -1 and 0: no cap, not a clock of 0 Hz
    assert maxn.cpu_cores == 8 and all(math.isnan(v) for v in (maxn.cpu_max_hz, maxn.gpu_max_hz, maxn.emc_max_hz))


def test_a_mode_line_that_cannot_be_read_is_named():
    with pytest.raises(ValueError, match=r"line 3: 'GPU MAX_FREQ fast'"):
        parse_nvpmodel_conf("< POWER_MODEL ID=0 NAME=X >\nCPU_ONLINE CORE_0 1\nGPU MAX_FREQ fast\n")


def test_a_power_model_header_that_cannot_be_read_is_named_not_dropped():
    with pytest.raises(ValueError, match=r"line 1: '< POWER_MODEL ID=two NAME=15W >'"):
        parse_nvpmodel_conf("< POWER_MODEL ID=two NAME=15W >\nCPU_ONLINE CORE_0 1\n")


def test_a_jetsons_mode_takes_clocks_from_sysfs_and_the_memory_cap_from_nvpmodel(tmp_path):
    sysfs = make_orin_sysfs(tmp_path / "sys")  # cpu0, cpu1 capped at 1497600 kHz, the GPU at 612 MHz
    status = write(tmp_path, "status", "pmode:0002")
    mode = current_mode(sysfs, CONF, status, proc_cgroup=str(tmp_path / "none"))
    assert (mode.cpu_max_hz, mode.gpu_max_hz, mode.emc_max_hz) == (1497600e3, 612e6, 3199e6)
    assert mode.cpu_cores == len(os.sched_getaffinity(0))
    labels = mode.labels()
    assert labels["mode_cpu_max_hz"] == "1.4976e+09" and labels["mode_emc_max_hz"] == "3.199e+09"
    assert "mode_cpu_quota_cores" not in labels  # none: absent, not "nan"
    without_sysfs = current_mode(str(tmp_path / "empty"), CONF, status, proc_cgroup=str(tmp_path / "none"))
    assert (without_sysfs.cpu_max_hz, without_sysfs.gpu_max_hz) == (1497600e3, 612e6)  # the 15W mode's table
    assert Mode.of_labels(labels).labels() == labels


def test_cgroup_quotas_v1_and_v2_in_cores_the_tightest_of_the_hierarchy(tmp_path):
    root = str(tmp_path)
    write(root, "cpu,cpuacct/a/cpu.cfs_quota_us", "150000")
    write(root, "cpu,cpuacct/a/cpu.cfs_period_us", "100000")
    write(root, "cpu,cpuacct/a/b/cpu.cfs_quota_us", "-1")  # no limit of its own: its parent's holds
    write(root, "cpu,cpuacct/a/b/cpu.cfs_period_us", "100000")
    v1 = write(root, "v1", "4:cpu,cpuacct:/a/b\n3:memory:/x")
    assert cgroup_quota_cores(v1, root) == pytest.approx(1.5)
    write(root, "c/cpu.max", "35000 100000")
    v2 = write(root, "v2", "0::/c")
    assert cgroup_quota_cores(v2, root) == pytest.approx(0.35)
    write(root, "d/cpu.max", "max 100000")
    assert math.isnan(cgroup_quota_cores(write(root, "v2d", "0::/d"), root))


@pytest.mark.parametrize("cpu_max", ["abc 100000", "0 100000", "50000", ""])
def test_an_unreadable_cgroup_v2_cpu_max_is_no_quota_not_a_crash(tmp_path, cpu_max):
    root = str(tmp_path)
    write(root, "e/cpu.max", cpu_max)
    assert math.isnan(cgroup_quota_cores(write(root, "v2e", "0::/e"), root))


def test_a_run_records_its_mode_in_run_info_and_every_results_record(cifar_dir, tmp_path):
    assert cli.main(small_run_args(cifar_dir, str(tmp_path)) + ["--epochs", "1"]) == 0
    with open(str(tmp_path / "results.jsonl")) as f:
        record = json.loads(f.readline())
    assert record["mode_cpu_cores"] == str(len(os.sched_getaffinity(0)))
    exposition = (tmp_path / "run.prom").read_text()
    info = [line for line in exposition.splitlines() if line.startswith("edgescope_train_run_info{")]
    assert 'mode_cpu_cores="{}"'.format(len(os.sched_getaffinity(0))) in info[0]
    assert set(MODE_LABELS) >= {k for k in record if k.startswith("mode_")}


def test_the_callbacks_record_the_mode_as_edgescope_train_does():
    from trainer.integrations.recorder import RunRecorder
    recorder = RunRecorder(run_id="mode-test", metrics_port=-1)
    recorder.start("cpu", {"model": "Net", "dataset": "Data", "batch_size": "8", "workers": "0",
                           "prefetch_factor": "none", "pin_memory": "false", "framework": "lightning",
                           "precision": "32-true", "gradient_accumulation_steps": "1"})
    info = [s for metric in recorder.metrics.registry.collect() if metric.name == "edgescope_train_run_info"
            for s in metric.samples]
    assert info[0].labels["mode_cpu_cores"] == str(len(os.sched_getaffinity(0)))


def test_a_fifo_in_place_of_nvpmodel_conf_does_not_hang_the_run_start(tmp_path):
    """A FIFO nobody writes to at /etc/nvpmodel.conf: open() blocked the trainer's start for ever; it is read as
    unknown instead (exporter.readfile's bounded, non-blocking read of regular files only)."""
    conf, status = tmp_path / "nvpmodel.conf", tmp_path / "status"
    os.mkfifo(str(conf))
    status.write_text("pmode:0000\n")
    assert nvpmodel_mode(str(conf), str(status)) is None
