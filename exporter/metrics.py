"""The exporter's metric contract (docs/metrics.md, exporter section) in one table.

Sources only produce `Sample`s; this table gives each name its type, help text
and label names, so a name or label outside the contract cannot reach /metrics.
"""
from typing import Dict, List, NamedTuple, Tuple


class Sample(NamedTuple):
    """One value of one series: the metric name, its labels and the value."""
    name: str
    labels: Dict[str, str]
    value: float


class MetricDef(NamedTuple):
    kind: str  # "gauge" or "counter"
    help: str
    labels: Tuple[str, ...]


def _gauge(help_text: str, *labels: str) -> MetricDef:
    return MetricDef("gauge", help_text, labels)


def _counter(help_text: str, *labels: str) -> MetricDef:
    return MetricDef("counter", help_text, labels)


METRICS = {
    # Health of the exporter's own sources.
    "edgescope_source_up": _gauge("1 if the source's last sample succeeded, else 0; reason says why it is down (empty when up).", "source", "reason"),
    "edgescope_source_sample_duration_seconds": _gauge("How long the source's last sample took.", "source"),
    "edgescope_source_last_success_timestamp_seconds": _gauge("Unix time of the source's last successful sample.", "source"),
    "edgescope_exporter_build_info": _gauge("Exporter version and Python version (always 1).", "version", "python"),
    # Power and energy.
    "edgescope_board_power_watts": _gauge("Board input power at the last sample."),
    "edgescope_board_energy_joules_total": _counter("Board energy since the exporter started: sum of P(t_i)*(t_i - t_i-1) on monotonic time, or a hardware energy counter where one exists."),
    "edgescope_rail_power_watts": _gauge("Power of one rail at the last sample.", "rail"),
    "edgescope_rail_energy_joules_total": _counter("Energy of one rail since the exporter started, integrated like the board energy.", "rail"),
    "edgescope_power_source_info": _gauge("Which source gives power and how board power is obtained: the input rail's name, or sum of the rails (always 1).", "source", "board_rail"),
    # Jetson state.
    "edgescope_temperature_celsius": _gauge("Temperature sensor reading; offline sensors (-256) are left out.", "sensor"),
    "edgescope_cpu_utilisation_ratio": _gauge("Busy fraction of one CPU core.", "cpu"),
    "edgescope_gpu_utilisation_ratio": _gauge("GPU (GR3D) busy fraction."),
    "edgescope_emc_utilisation_ratio": _gauge("External memory controller busy fraction."),
    "edgescope_memory_used_bytes": _gauge("RAM in use."),
    "edgescope_memory_total_bytes": _gauge("RAM total."),
    "edgescope_swap_used_bytes": _gauge("Swap in use."),
    "edgescope_swap_total_bytes": _gauge("Swap total."),
    "edgescope_fan_speed_ratio": _gauge("Fan PWM duty, 0..1.", "fan"),
    "edgescope_power_mode_info": _gauge("nvpmodel power mode name (always 1).", "mode"),
    "edgescope_jetson_clocks_enabled": _gauge("1 if jetson_clocks is on, else 0."),
    "edgescope_board_info": _gauge("Board identity (always 1).", "model", "module", "l4t", "jetpack"),
    # Clocks and thermal throttling.
    "edgescope_clock_frequency_hertz": _gauge("Current clock frequency.", "clock"),
    "edgescope_clock_frequency_min_hertz": _gauge("Current frequency floor set by the governor (equals the max while jetson_clocks pins it).", "clock"),
    "edgescope_clock_frequency_max_hertz": _gauge("Hardware maximum clock frequency.", "clock"),
    "edgescope_thermal_zone_temperature_celsius": _gauge("Thermal zone temperature, by zone type.", "zone"),
    "edgescope_thermal_zone_trip_point_celsius": _gauge("Thermal zone trip point temperature.", "zone", "trip", "trip_type"),
    "edgescope_throttle_events_total": _counter("Over-current / throttle events counted by the hardware (Orin hwmon oc*_event_cnt).", "sensor"),
    # Disk.
    "edgescope_disk_reads_completed_total": _counter("Reads completed.", "disk"),
    "edgescope_disk_read_bytes_total": _counter("Bytes read.", "disk"),
    "edgescope_disk_read_time_seconds_total": _counter("Time spent by all reads.", "disk"),
    "edgescope_disk_writes_completed_total": _counter("Writes completed.", "disk"),
    "edgescope_disk_written_bytes_total": _counter("Bytes written.", "disk"),
    "edgescope_disk_io_time_seconds_total": _counter("Time the disk had I/O in flight.", "disk"),
    "edgescope_disk_read_iops": _gauge("Reads completed per second over the last sampling interval (iostat r/s).", "disk"),
    "edgescope_disk_read_bytes_per_second": _gauge("Bytes read per second over the last sampling interval (iostat rkB/s * 1024).", "disk"),
    "edgescope_disk_read_await_seconds": _gauge("Mean time per read completed over the last sampling interval (iostat r_await / 1000).", "disk"),
    "edgescope_disk_utilisation_ratio": _gauge("Fraction of the last sampling interval the disk had I/O in flight (iostat %util / 100).", "disk"),
    # Page cache.
    "edgescope_dataset_up": _gauge("1 if the dataset's page cache was measured, 0 if it cannot be (the reason is in edgescope_dataset_down_info).", "dataset"),
    "edgescope_dataset_down_info": _gauge("Why the dataset's page cache is not measured (1 while down, absent when up).", "dataset", "reason"),
    "edgescope_dataset_scan_errors_total": _counter("Files or directories of the dataset skipped because they could not be read or vanished during a listing or measurement.", "dataset"),
    "edgescope_dataset_size_bytes": _gauge("Size of the dataset's files.", "dataset"),
    "edgescope_dataset_resident_bytes": _gauge("Bytes of the dataset's files in the page cache: resident pages * page size, estimated as ratio * pages when sampled.", "dataset"),
    "edgescope_dataset_page_cache_ratio": _gauge("Resident pages / total pages of the dataset's files, as vmtouch counts them; an estimate when sampled_files < files.", "dataset"),
    "edgescope_dataset_page_cache_ratio_error_bound": _gauge("The ratio is within this of the true ratio with 99% probability (Hoeffding bound over the page-weighted draws); 0 when every file was measured.", "dataset"),
    "edgescope_dataset_files": _gauge("Regular files in the dataset (hard links once).", "dataset"),
    "edgescope_dataset_sampled_files": _gauge("Files measured for the last ratio: page-weighted random draws, or every file.", "dataset"),
    "edgescope_dataset_scan_duration_seconds": _gauge("Wall time the last page-cache measurement of the dataset took.", "dataset"),
    "edgescope_dataset_scan_timestamp_seconds": _gauge("Unix time the last page-cache measurement of the dataset finished.", "dataset"),
}  # type: Dict[str, MetricDef]


def check(samples: List[Sample]) -> None:
    """Raise ValueError if a sample's name or label set is outside the contract."""
    for s in samples:
        spec = METRICS.get(s.name)
        if spec is None:
            raise ValueError("metric {} is not in docs/metrics.md".format(s.name))
        if tuple(sorted(s.labels)) != tuple(sorted(spec.labels)):
            raise ValueError("metric {} has labels {}, the contract says {}".format(
                s.name, sorted(s.labels), sorted(spec.labels)))
