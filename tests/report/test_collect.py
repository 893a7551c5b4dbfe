"""Which board's series a run gets, and the identity notes (no Prometheus)."""
import pytest

from report.collect import Epoch, Run, _board_series, _busiest, _lowest_within, check_identity


def run_on(device: str, instance: str, epochs=(0, 1, 2)) -> Run:
    run = Run(run_id="r1", device=device, instance=instance, device_type="nano", storage="sd", info={})
    run.epochs = [Epoch(run_id="r1", device=device, epoch=k) for k in epochs]
    return run


def test_only_the_exporter_on_the_trainers_host_counts_where_two_share_a_device_label():
    series = [({"instance": "10.0.0.5:9945"}, [(1.0, 5.0)]), ({"instance": "10.0.0.6:9945"}, [(1.0, 9.0)])]
    notes = []
    assert _board_series(series, run_on("nano-1", "10.0.0.6:9946"), notes) == [series[1]] and notes == []
    assert _board_series(series, run_on("nano-1", "10.0.0.7:9946"), notes) == []
    assert notes == ["run r1 on nano-1: 2 targets on other hosts are labelled device 'nano-1' (10.0.0.5:9945, "
                     "10.0.0.6:9945), none on the trainer's host '10.0.0.7'; their data is left out"]
    assert _board_series(series[:1], run_on("nano-1", "10.0.0.7:9946"), []) == series[:1]  # one exporter: its own


def test_one_run_id_on_two_boards_and_missing_epochs_are_noted():
    notes = []
    check_identity([run_on("nano-1", "10.0.0.5:9946"), run_on("nano-2", "10.0.0.6:9946", (0, 1, 4))], notes)
    assert notes == ["run id r1 was seen on 2 boards (nano-1 at 10.0.0.5:9946, nano-2 at 10.0.0.6:9946); each is "
                     "reported on its own row, never merged",
                     "run r1 on nano-2: epochs 2, 3 missing (no trainer data for them in Prometheus)"]


def test_the_lowest_page_cache_of_an_epoch_is_what_its_reads_could_find():
    """A cold epoch reads its dataset in: its lowest is the first scan inside it (0.1), not the 1.0 its end shows;
    the sample before its start (the previous epoch's 0.6) is not its own; with no scan inside, it is all there is."""
    samples = [(90.0, 0.6), (101.0, 0.1), (105.0, 0.9), (110.0, 1.0), (111.0, 0.2)]
    assert _lowest_within(samples, 100.0, 110.0, staleness=30.0) == 0.1
    assert _lowest_within(samples, 102.0, 110.0, staleness=30.0) == 0.9
    assert _lowest_within(samples, 91.0, 100.0, staleness=30.0) == 0.6  # no scan inside: the one before
    assert _lowest_within(samples, 96.0, 100.0, staleness=5.0) is None  # ... unless stale by then
    assert _lowest_within([], 100.0, 110.0, staleness=30.0) is None


def test_a_disk_busy_past_the_whole_window_counts_as_busy_throughout():
    """io_ticks in whole ticks and interpolated window edges can count a little more than the window: 1, not
    a ratio no disk has (the range check would then drop it as unphysical)."""
    assert _busiest([({"disk": "sda"}, [(0.0, 0.0), (10.0, 10.5)])], 0.0, 10.0) == 1.0
    assert _busiest([({"disk": "sda"}, [(0.0, 0.0), (10.0, 4.0)]), ({"disk": "sdb"}, [(0.0, 0.0), (10.0, 6.0)])],
                    0.0, 10.0) == pytest.approx(0.6)
