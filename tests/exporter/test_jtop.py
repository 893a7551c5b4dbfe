"""The jtop source against a fake client that holds real jtop 4.3 attribute values."""
import copy
from datetime import timedelta

import pytest

from exporter.sources.base import SourceDown
from exporter.sources.jtop import JtopSource
from tests.exporter.fixtures import jtop_orin_nano as real


class JtopException(Exception):
    """Stands for jtop.core.exceptions.JtopException."""


class NVPModel:
    """jtop's NVPModel: str() and .name give the mode name."""

    def __init__(self, name):
        self.name = name

    def __str__(self):
        return self.name


class JetsonClocks:
    """jtop's JetsonClocks: truthy while jetson_clocks runs (__bool__ returns is_alive)."""

    def __init__(self, alive):
        self.is_alive = alive

    def __bool__(self):
        return self.is_alive


class FakeJtop:
    """Minimal jtop client: start()/ok()/close() and the attributes, with real values.

    `uptime` is what jtop 4.x gives: timedelta(seconds=<the service's reading time>).
    """
    service_up = True
    instances = 0
    service_uptime = 1000.0

    def __init__(self, interval=1.0):
        self.interval = interval
        self.power = copy.deepcopy(real.POWER)
        self.temperature = copy.deepcopy(real.TEMPERATURE)
        self.memory = copy.deepcopy(real.MEMORY)
        self.cpu = copy.deepcopy(real.CPU)
        self.gpu = copy.deepcopy(real.GPU)
        self.fan = copy.deepcopy(real.FAN)
        self.nvpmodel = NVPModel(real.NVPMODEL)
        self.jetson_clocks = JetsonClocks(real.JETSON_CLOCKS)
        self.board = copy.deepcopy(real.BOARD)
        self.closed = False

    def start(self):
        if not FakeJtop.service_up:
            raise JtopException("The jtop.service is not active. Please run:\nsudo systemctl restart jtop.service")
        FakeJtop.instances += 1

    def ok(self, spin=False):
        if not FakeJtop.service_up:
            raise JtopException("jtop service connection lost")
        return True

    def close(self):
        self.closed = True

    @property
    def uptime(self):
        return timedelta(seconds=FakeJtop.service_uptime)


@pytest.fixture
def sock(tmp_path):
    path = tmp_path / "jtop.sock"
    path.write_text("")
    FakeJtop.service_up = True
    FakeJtop.instances = 0
    FakeJtop.service_uptime = 1000.0
    return str(path)


def by_key(samples):
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in samples}


def test_real_orin_nano_values(sock):
    src = JtopSource(1.0, sock, FakeJtop)
    got = by_key(src.sample())
    assert got[("edgescope_board_power_watts", ())] == 5.133
    assert got[("edgescope_power_source_info", (("board_rail", "VDD_IN"), ("fallback_from", ""), ("replay", "false"),
                                                ("source", "jtop")))] == 1
    assert got[("edgescope_rail_power_watts", (("rail", "VDD_SOC"),))] == 1.54
    assert got[("edgescope_rail_power_watts", (("rail", "VDD_CPU_GPU_CV"),))] == 1.064
    assert ("edgescope_temperature_celsius", (("sensor", "cv0"),)) not in got  # offline (-256)
    assert got[("edgescope_temperature_celsius", (("sensor", "tj"),))] == 47.906
    assert got[("edgescope_cpu_utilisation_ratio", (("cpu", "cpu1"),))] == pytest.approx(1 - 0.6161616161616161)
    assert got[("edgescope_gpu_utilisation_ratio", ())] == pytest.approx(0.048)
    assert got[("edgescope_memory_used_bytes", ())] == 1687344 * 1024
    assert got[("edgescope_gpu_memory_bytes", ())] == 36904 * 1024  # MEMORY['RAM']['shared'], kB
    assert got[("edgescope_swap_total_bytes", ())] == 1844424 * 1024
    assert got[("edgescope_emc_utilisation_ratio", ())] == 0.0
    assert got[("edgescope_clock_frequency_hertz", (("clock", "emc"),))] == 2133000e3
    assert got[("edgescope_clock_frequency_max_hertz", (("clock", "emc"),))] == 3199000e3
    assert got[("edgescope_fan_speed_ratio", (("fan", "pwmfan0"),))] == pytest.approx(0.26274509803921568)
    assert got[("edgescope_power_mode_info", (("mode", "25W"),))] == 1
    assert got[("edgescope_jetson_clocks_enabled", ())] == 0
    info = [k for k in got if k[0] == "edgescope_board_info"][0]
    assert dict(info[1]) == {"model": "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super",
                             "module": "NVIDIA Jetson Orin Nano (4GB ram)", "l4t": "36.4.3", "jetpack": "6.2"}


@pytest.mark.parametrize("ram", [{"tot": 3688892, "used": 1687344}, {"tot": 3688892, "used": 1687344, "shared": 0}])
def test_gpu_memory_is_absent_where_jtop_does_not_give_it(sock, ram):
    """jetson-stats without the field, or with 0 (its value when neither NvMapMemUsed nor nvidia-smi answered)."""
    class NoShared(FakeJtop):
        def __init__(self, interval=1.0):
            super().__init__(interval)
            self.memory["RAM"] = ram
    names = {s.name for s in JtopSource(1.0, sock, NoShared).sample()}
    assert "edgescope_memory_used_bytes" in names and "edgescope_gpu_memory_bytes" not in names


def test_board_without_input_rail_is_the_sum(sock):
    class AgxOrin(FakeJtop):
        def __init__(self, interval=1.0):
            super().__init__(interval)
            # jtop's total_power() without VDD_IN/POM_5V_IN: 'tot' is the rail sum and has no 'name'
            self.power = {"rail": self.power["rail"], "tot": {"power": 1064 + 1540, "avg": 806 + 1524}}
    got = by_key(JtopSource(1.0, sock, AgxOrin).sample())
    assert got[("edgescope_power_source_info", (("board_rail", "sum"), ("fallback_from", ""), ("replay", "false"),
                                                ("source", "jtop")))] == 1
    assert got[("edgescope_board_power_watts", ())] == pytest.approx(2.604)


def test_energy_integrates_between_the_service_reading_times(sock):
    src = JtopSource(1.0, sock, FakeJtop)
    for uptime in (100.0, 101.0, 102.5):
        FakeJtop.service_uptime = uptime
        got = by_key(src.sample())
    # 5.133 W over 1.0 s + 1.5 s of the service's clock
    assert got[("edgescope_board_energy_joules_total", ())] == pytest.approx(5.133 * 2.5)
    assert got[("edgescope_rail_energy_joules_total", (("rail", "VDD_SOC"),))] == pytest.approx(1.54 * 2.5)
    assert got[("edgescope_board_energy_uncovered_seconds_total", ())] == 0


def test_stale_reading_is_not_integrated_again(sock, monkeypatch):
    now = [0.0]
    monkeypatch.setattr("exporter.sources.jtop.time.monotonic", lambda: now[0])
    src = JtopSource(1.0, sock, FakeJtop)
    FakeJtop.service_uptime = 500.0
    src.sample()
    now[0] = 1.0  # we read again, the service has sent nothing new
    got = by_key(src.sample())
    assert got[("edgescope_board_energy_joules_total", ())] == 0.0
    assert got[("edgescope_board_power_watts", ())] == 5.133  # the gauge still says what the board last drew
    FakeJtop.service_uptime, now[0] = 501.0, 2.0
    assert by_key(src.sample())[("edgescope_board_energy_joules_total", ())] == pytest.approx(5.133)
    now[0] = 6.0  # nothing new for 4 s, past the 3 s gap limit: down, not a frozen reading
    with pytest.raises(SourceDown, match="no new reading for over 3s"):
        src.sample()


def test_gap_limit_follows_a_slower_service(sock):
    """Another client set jtop.service to 2 s readings: 2 s apart is no gap, 7 s apart is."""
    class SlowService(FakeJtop):
        def __init__(self, interval=1.0):
            super().__init__(interval)
            self.interval = 2.0  # jtop.interval: the service's pace, not the one asked for
    src = JtopSource(0.5, sock, SlowService)
    for uptime in (100.0, 102.0, 104.0, 111.0):
        FakeJtop.service_uptime = uptime
        got = by_key(src.sample())
    assert got[("edgescope_board_energy_joules_total", ())] == pytest.approx(5.133 * 4.0)
    assert got[("edgescope_board_energy_uncovered_seconds_total", ())] == pytest.approx(7.0)


def test_missing_socket_is_reported_and_retried(tmp_path):
    src = JtopSource(1.0, str(tmp_path / "jtop.sock"), FakeJtop)
    with pytest.raises(SourceDown, match="socket .* missing"):
        src.sample()
    with pytest.raises(SourceDown) as err:
        src.sample()  # inside the backoff window: no new attempt, and the same reason (one series, no delay in it)
    assert str(err.value) == "jtop socket {} missing: is jtop.service running?".format(tmp_path / "jtop.sock")


def test_service_restart_reconnects_with_backoff(sock, monkeypatch):
    now = [100.0]
    monkeypatch.setattr("exporter.sources.jtop.time.monotonic", lambda: now[0])
    src = JtopSource(1.0, sock, FakeJtop, max_backoff=8.0)
    src.sample()
    FakeJtop.service_up = False  # the service restarts
    with pytest.raises(SourceDown, match="connection lost"):
        src.sample()
    waits = []
    for _ in range(5):
        now[0] = src._retry_at
        with pytest.raises(SourceDown, match="not active"):
            src.sample()
        waits.append(src._retry_at - now[0])
    assert waits == [2.0, 4.0, 8.0, 8.0, 8.0]  # doubling, capped
    FakeJtop.service_up = True
    now[0] = src._retry_at
    assert by_key(src.sample())[("edgescope_board_power_watts", ())] == 5.133
    assert FakeJtop.instances == 2 and src._backoff == 0


def test_version_mismatch_reason_is_the_first_line(sock):
    class Mismatch(FakeJtop):
        def start(self):
            raise JtopException("Mismatch version jtop service: [4.2.7] and client: [4.3.1]. Please run:\n\nsudo systemctl restart jtop.service")
    with pytest.raises(SourceDown) as err:
        JtopSource(1.0, sock, Mismatch).sample()
    assert str(err.value) == "Mismatch version jtop service: [4.2.7] and client: [4.3.1]. Please run:"


def test_jetson_stats_not_installed_says_so(sock):
    with pytest.raises(SourceDown, match="jetson-stats .* not installed"):
        JtopSource(1.0, sock).sample()
