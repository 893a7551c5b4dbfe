"""Window arithmetic, exact on synthetic series (no Prometheus)."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from report import window


def linear(rate, t0, t1, step, offset=0.0):
    """A counter growing at `rate` per second, sampled every `step` s."""
    out, t = [], t0
    while t <= t1 + 1e-9:
        out.append((t, offset + rate * (t - t0)))
        t += step
    return out


def test_constant_power_window_between_scrapes_is_exact():
    samples = linear(7.5, 1000.0, 1100.0, 15.0)  # 7.5 W, scraped every 15 s
    assert window.increase(samples, 1003.25, 1071.5) == pytest.approx(7.5 * 68.25, abs=1e-9)
    assert window.rate(samples, 1003.25, 1071.5) == pytest.approx(7.5, abs=1e-12)


def test_interpolation_at_each_edge_uses_the_two_surrounding_scrapes():
    # piecewise: 2 W until 1010, 10 W after; scrapes at 1000, 1010, 1020
    samples = [(1000.0, 0.0), (1010.0, 20.0), (1020.0, 120.0)]
    # from 1005 (value 10) to 1015 (value 70)
    assert window.increase(samples, 1005.0, 1015.0) == 60.0
    # edges exactly on samples
    assert window.increase(samples, 1000.0, 1020.0) == 120.0
    assert window.increase(samples, 1010.0, 1010.0) == 0.0


def test_counter_reset_counts_the_new_value_like_promql_increase():
    # 10 J/s; the process restarts at 1025 (just after the 1020 scrape) and counts from zero again
    samples = [(1000.0, 500.0), (1010.0, 600.0), (1020.0, 700.0), (1030.0, 50.0), (1040.0, 150.0)]
    adjusted = window.reset_adjusted(samples)
    assert [v for _, v in adjusted] == [500.0, 600.0, 700.0, 750.0, 850.0]
    # window 1015..1035: 650 -> 800 on the adjusted series
    assert window.increase(samples, 1015.0, 1035.0) == 150.0
    # two resets in a row
    twice = [(0.0, 5.0), (1.0, 2.0), (2.0, 1.0), (3.0, 4.0)]
    assert window.increase(twice, 0.0, 3.0) == 2.0 + 1.0 + 3.0


def test_unsorted_input_is_sorted_first():
    samples = [(1020.0, 120.0), (1000.0, 0.0), (1010.0, 20.0)]
    assert window.increase(samples, 1005.0, 1015.0) == 60.0


def test_window_outside_the_samples_is_unknown_not_zero():
    samples = linear(1.0, 1000.0, 1060.0, 15.0)
    assert window.increase(samples, 990.0, 1030.0) is None  # starts before the first scrape
    assert window.increase(samples, 1010.0, 1061.0) is None  # ends after the last scrape
    assert window.increase([], 0.0, 1.0) is None
    assert window.rate(samples, 1010.0, 1010.0) is None  # empty window: no rate


def test_window_ending_before_it_starts_is_an_error():
    with pytest.raises(ValueError):
        window.increase([(0.0, 0.0), (10.0, 10.0)], 5.0, 4.0)


def test_bracket_holds_the_samples_an_interpolation_reads():
    samples = linear(1.0, 1000.0, 1060.0, 10.0)
    assert [t for t, _ in window.bracket(samples, 1015.0, 1030.0)] == [1010.0, 1020.0, 1030.0]
    assert window.typical_interval(samples) == 10.0 and window.typical_interval(samples[:1]) is None


def test_doubts_find_a_reset_and_gaps_at_the_edges():
    steady = linear(5.0, 1000.0, 1100.0, 10.0)
    assert window.doubts(steady, 1015.0, 1075.0, 30.0, edges_only=True) == []
    reset = steady[:5] + [(t, v - 400.0) for t, v in steady[5:]]  # restarted between 1040 and 1050
    assert window.doubts(reset, 1015.0, 1075.0, 30.0, edges_only=True) == ["the counter went down"]
    assert window.doubts(reset, 1055.0, 1075.0, 30.0, edges_only=True) == []  # after it: fine
    holed = [s for s in steady if not 1030.0 < s[0] < 1070.0]  # nothing from 1030 to 1070
    assert window.doubts(holed, 1015.0, 1095.0, 30.0, edges_only=True) == []  # inside: the counter kept counting
    assert window.doubts(holed, 1015.0, 1095.0, 30.0, edges_only=False) == ["no sample for 40.0 s"]
    assert window.doubts(holed, 1045.0, 1095.0, 30.0, edges_only=True) == ["no sample for 40.0 s"]  # an edge in it


def test_energy_doubts_see_a_restart_the_counter_does_not_show():
    from report.collect import energy_doubts
    # the exporter restarted at 1045 and its new counter already exceeds the old one at the next scrape
    energy = [(1000.0, 10.0), (1010.0, 20.0), (1020.0, 30.0), (1030.0, 40.0), (1040.0, 50.0), (1050.0, 55.0),
              (1060.0, 65.0), (1070.0, 75.0)]
    starts = [[(t, 900.0 if t < 1045.0 else 1045.0) for t, _ in energy]]
    assert window.doubts(energy, 1015.0, 1065.0, 30.0, edges_only=True) == []  # no decrease: invisible to it
    assert energy_doubts(energy, starts, [], 1015.0, 1065.0, 30.0) == ["the exporter restarted"]
    assert energy_doubts(energy, starts, [], 1050.0, 1065.0, 30.0) == []  # an epoch after the restart
    uncovered = [[(1000.0, 0.0), (1030.0, 0.0), (1040.0, 2.5), (1070.0, 2.5)]]
    assert energy_doubts(energy, [], uncovered, 1015.0, 1045.0, 30.0) == ["power readings did not cover all of it"]
    assert energy_doubts(energy, [], uncovered, 1045.0, 1065.0, 30.0) == []


def _energy(levels, step_s, t):
    """Energy by time t of a board whose power holds levels[i] watts during [i step, (i + 1) step)."""
    whole = min(int(t // step_s), len(levels))
    done = sum(levels[:whole]) * step_s
    return done + (levels[whole] * (t - whole * step_s) if whole < len(levels) else 0.0)


@settings(max_examples=300, deadline=None)
@given(levels=st.lists(st.floats(0.5, 60.0), min_size=12, max_size=12), step=st.floats(0.5, 10.0),
       scrape=st.floats(0.5, 15.0), lag=st.floats(0.0, 2.0), ages=st.lists(st.floats(0.0, 1.0), min_size=7,
                                                                           max_size=7),
       edges=st.tuples(st.floats(0.05, 0.45), st.floats(0.55, 0.95)))
def test_the_bound_covers_a_lagging_counter_whatever_the_power_does(levels, step, scrape, lag, ages, edges):
    """A counter scraped every ``scrape`` s that reads the energy of up to ``lag`` s before (an exporter's,
    as of its last sample) under power steps: the interpolated increase is off by no more than its bound."""
    span = len(levels) * step
    samples, counted_to = [], 0.0
    for k in range(int(span // scrape) + 1):  # scrape k's count is ages[k % 7] of a lag old, never older than k-1's
        counted_to = max(counted_to, k * scrape - ages[k % len(ages)] * lag)
        samples.append((k * scrape, _energy(levels, step, counted_to)))
    start, end = edges[0] * span, edges[1] * span
    bound = window.increase_bound(samples, start, end, lag)
    if bound is None:  # the data ends within one lag (plus a scrape) of the end
        assert samples[-1][0] < end + lag
        return
    truth = _energy(levels, step, end) - _energy(levels, step, start)
    assert abs(window.increase(samples, start, end) - truth) <= bound + 1e-9
    # and it is no wider than the counter's growth over the scrapes around each edge
    assert bound <= 2 * max(levels) * (2 * scrape + lag) + 1e-9


def test_the_bound_is_the_interval_around_each_edge():
    samples = linear(10.0, 0.0, 100.0, 10.0)  # 10 W, scraped every 10 s, no lag
    # edges at 15 and 55: the counts there lie in [50, 100] and [500, 600]; interpolated 400 J
    assert window.increase_bound(samples, 15.0, 55.0, 0.0) == pytest.approx(100.0)
    assert window.increase_bound(samples, 10.0, 50.0, 0.0) == pytest.approx(0.0)  # edges on scrapes
    assert window.increase_bound(samples, 10.0, 50.0, 2.0) == pytest.approx(100.0)  # up to 2 s late each
    assert window.increase_bound(samples, 10.0, 99.0, 2.0) is None  # no scrape 2 s after the end
