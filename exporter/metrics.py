"""The exporter's metric contract (docs/metrics.md, exporter section) in one table.

Sources only produce `Sample`s; this table gives each name its type, help text
and label names, so a name or label outside the contract cannot reach /metrics.
`exposable` is the last gate before /metrics: a value that is not a finite
number in its unit's range is dropped (and counted by the sampler) rather than
exposed, and label values are made valid UTF-8.
"""
from typing import Dict, List, NamedTuple, Optional, Tuple

from exporter.ranges import AT_MOST, outside, unit_range


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
    "edgescope_source_up": _gauge("1 if the source's last sample succeeded, else 0.", "source"),
    "edgescope_source_down_info": _gauge("Why the source is down (always 1; present only while edgescope_source_up is 0).", "source", "reason"),
    "edgescope_source_sample_duration_seconds": _gauge("How long the source's last sample took.", "source"),
    "edgescope_source_last_success_timestamp_seconds": _gauge("Unix time of the source's last successful sample.", "source"),
    "edgescope_source_rejected_samples_total": _counter("Samples the source produced that were not exposed: value not a finite number in its unit's range (the log says which).", "source"),
    "edgescope_exporter_build_info": _gauge("Exporter version and Python version (always 1).", "version", "python"),
    "edgescope_exporter_interval_seconds": _gauge("The exporter's sampling interval (--interval); a source of power lines (tegrastats, jtop) reads at it too, so the energy counter lags by up to twice this for them, once for a hardware counter."),
    "edgescope_exporter_start_time_seconds": _gauge("Unix time the exporter process started (by its own clock)."),
    "edgescope_time_seconds": _gauge("System wall-clock time in Unix seconds when the scrape was answered."),
    # Power and energy.
    "edgescope_board_power_watts": _gauge("Board input power at the last sample."),
    "edgescope_board_energy_joules_total": _counter("Board energy since the exporter started: trapezoid rule over power readings on monotonic time, gaps left out, or a hardware energy counter where one exists."),
    "edgescope_board_energy_uncovered_seconds_total": _counter("Time since the exporter started inside gaps between power readings (longer than 3 sampling intervals, at least 1 s) or ending in an energy counter reset: credited to no reading, so board energy leaves it out."),
    "edgescope_rail_power_watts": _gauge("Power of one rail at the last sample.", "rail"),
    "edgescope_rail_energy_joules_total": _counter("Energy of one rail since the exporter started, integrated like the board energy (same gaps left out).", "rail"),
    "edgescope_power_source_info": _gauge("Which source gives power and how board power is obtained: the input rail's name, or sum of the rails; replay=true for a recorded tegrastats log, fallback_from names the source auto passed over (always 1).", "source", "board_rail", "replay", "fallback_from"),
    # Jetson state.
    "edgescope_temperature_celsius": _gauge("Temperature sensor reading; offline sensors (-256) are left out.", "sensor"),
    "edgescope_cpu_utilisation_ratio": _gauge("Busy fraction of one CPU core.", "cpu"),
    "edgescope_gpu_utilisation_ratio": _gauge("GPU (GR3D) busy fraction."),
    "edgescope_emc_utilisation_ratio": _gauge("External memory controller busy fraction."),
    "edgescope_memory_used_bytes": _gauge("RAM in use."),
    "edgescope_memory_total_bytes": _gauge("RAM total."),
    "edgescope_gpu_memory_bytes": _gauge("The GPU's share of the board's RAM (unified memory: the kernel's "
                                         "NvMapMemUsed, through jtop or /proc/meminfo)."),
    "edgescope_swap_used_bytes": _gauge("Swap in use."),
    "edgescope_swap_total_bytes": _gauge("Swap total."),
    "edgescope_fan_speed_ratio": _gauge("Fan PWM duty, 0..1.", "fan"),
    "edgescope_power_mode_info": _gauge("nvpmodel power mode name (always 1).", "mode"),
    "edgescope_jetson_clocks_enabled": _gauge("1 if jetson_clocks is on, else 0."),
    "edgescope_board_info": _gauge("Board identity (always 1).", "model", "module", "l4t", "jetpack"),
    # Clocks and thermal throttling.
    "edgescope_clock_frequency_hertz": _gauge("Current clock frequency.", "clock"),
    "edgescope_clock_frequency_min_hertz": _gauge("Current frequency floor (scaling_min_freq, devfreq min_freq): equals the policy max while jetson_clocks pins it, and the kernel clamps it down with a lowered cap.", "clock"),
    "edgescope_clock_frequency_max_hertz": _gauge("Hardware maximum clock frequency (cpuinfo_max_freq; the GPU's highest available frequency).", "clock"),
    "edgescope_clock_frequency_policy_max_hertz": _gauge("Maximum the kernel allows now (scaling_max_freq, devfreq max_freq): the power mode's cap, lowered further by any thermal or over-current cap.", "clock"),
    "edgescope_clock_frequency_mode_max_hertz": _gauge("The power mode's own cap: the highest policy maximum since nvpmodel last set the mode (/var/lib/nvpmodel/status); a policy maximum below it is throttling.", "clock"),
    "edgescope_cooling_device_state": _gauge("Thermal cooling device's current state (cur_state): 0 is no cooling; for a fan, its speed step, otherwise a throttling step.", "cooling_device", "type"),
    "edgescope_cooling_device_max_state": _gauge("Thermal cooling device's highest state (max_state).", "cooling_device", "type"),
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
    "edgescope_dataset_disk_info": _gauge("The whole disk in /proc/diskstats that holds the dataset's filesystem (always 1).", "dataset", "disk"),
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


def value_problem(name: str, value: object) -> Optional[str]:
    """Why `value` cannot be exposed as `name` (None if it can): not a float, or outside its unit's physical
    range (exporter/ranges.py, the table the report checks against too)."""
    try:
        number = float(value)  # type: ignore
    except (TypeError, ValueError, OverflowError):  # e.g. an int of 400 digits
        return "not a number that fits a float"
    return outside(number, unit_range(name))


def utf8_label(value: object) -> str:
    """A label value as valid UTF-8 text: bytes that are not UTF-8 (a path from a
    non-UTF-8 file name arrives as surrogate escapes) become `\\xNN`, as `ls -b`
    shows them, so the series stays the same from scrape to scrape."""
    text = str(value)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # surrogates that do not stand for bytes
        raw = text.encode("utf-8", "backslashreplace")
    return raw.decode("utf-8", "backslashreplace")


def exposable(samples: List[Sample], totals: Optional[Dict[str, float]] = None) -> Tuple[List[Sample], List[str]]:
    """The samples fit for /metrics (values as floats, labels valid UTF-8), and
    one 'name: problem' line for each sample left out. ``totals``: wholes (AT_MOST) the source read beside its
    samples without exposing them (meminfo's MemTotal)."""
    kept, rejected = [], []
    wholes = {name: value for name, value in (totals or {}).items() if not value_problem(name, value)}
    wholes.update({s.name: s.value for s in samples
                   if s.name in AT_MOST.values() and not value_problem(s.name, s.value)})
    for s in samples:
        problem = value_problem(s.name, s.value)
        whole = AT_MOST.get(s.name, "")
        if not problem and whole in wholes and float(s.value) > float(wholes[whole]):
            problem = "above {}".format(whole)
        if problem:
            rejected.append("{}: {}".format(s.name, problem))
        else:
            kept.append(Sample(s.name, {k: utf8_label(v) for k, v in s.labels.items()}, float(s.value)))
    return kept, rejected
