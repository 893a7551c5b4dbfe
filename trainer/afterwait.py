"""How much more CPU an epoch's makings spent than the same makings back to back: what caching gives beside the
waits themselves, measured on the run's own samples between epochs.

A worker that waited 39-77 ms for each file before decoding it spent 1.03-1.77 x the CPU seconds on its decodes
that the same decodes took back to back (the 2-core bench VM, 768 px JPEGs cropped to 64 px: 7.7-13.5 against
5.8-8.6 ms a sample): while it waited, its caches and its core went cold, and on a shared core the step ran in
between. A cached run does not pay that, and the cached what-if that kept the measured CPU as it was predicted that
run 32 % too slow. How much it costs depends on the machine, the work, the wait and what ran during it, so it is
not a constant: ``probe`` makes a few of the run's own samples back to back right after the epoch, and the
what-if takes the epoch's making CPU per sample down to theirs where its makings waited for the device.

A sleep before each timed making reproduces only part of it (1.14-1.20 on one core of this VM, where the runs
paid 1.27-1.77: no slow disk's daemon and no step ran during the sleep), so the probe measures the other side,
the making as a cached run makes it. Torch-free: the report reads timelines too."""
import math
import statistics
from typing import Callable, List, NamedTuple, Optional, Sequence

# the epoch's mean wait per sample below which no probe runs: 10 ms cost the decode ~9 % here, and with no wait
# at all the probe found 3-14 % (docs/training.md): a shorter wait's cost is not to be told from that
MIN_WAIT_S = 0.01
SAMPLES = 32  # made back to back (each once more before, untimed): ~0.3 s for 768 px JPEGs here
SIGNIFICANT = 2.0  # the epoch's cost counts as higher where it lies this many standard errors above the probe's


class AfterWait(NamedTuple):
    """The epoch's making CPU per sample (its reads' left out; its waits averaged ``wait_s`` a sample) against
    the probe's, the same making back to back."""
    wait_s: float
    epoch_cpu_s: float
    back_to_back_cpu_s: float
    standard_error_s: float  # the probe's mean's (its samples' spread over the square root of their number)
    samples: int

    def ratio(self) -> float:
        return self.epoch_cpu_s / self.back_to_back_cpu_s

    def slowdown(self) -> float:
        """The ratio where the epoch's cost lies ``SIGNIFICANT`` standard errors above the probe's, else 1: an
        epoch as fast as back to back, or one within the probe's noise, changes nothing."""
        excess = self.epoch_cpu_s - self.back_to_back_cpu_s
        return self.ratio() if excess > SIGNIFICANT * self.standard_error_s else 1.0

    def describe(self) -> str:
        return "{:.2f} x their CPU back to back ({:.3g} against {:.3g} ± {:.2g} ms a sample, {} samples, after " \
               "waits of {:.0f} ms{})".format(
                   self.ratio(), self.epoch_cpu_s * 1000, self.back_to_back_cpu_s * 1000, self.standard_error_s * 1000,
                   self.samples, self.wait_s * 1000, "" if self.slowdown() > 1 else "; within the probe's noise, "
                                                                                      "not used")

    def to_dict(self) -> dict:
        return self._asdict()

    @classmethod
    def from_dict(cls, data: dict) -> "AfterWait":
        """``to_dict``'s; ValueError, KeyError or TypeError where it is not one."""
        figures = [float(data[name]) for name in cls._fields[:4]]
        samples = int(data["samples"])
        if not (all(math.isfinite(x) and x >= 0 for x in figures) and figures[2] > 0 and samples >= 2
                and math.isfinite(figures[1] / figures[2])):
            raise ValueError("after_wait: figures must be finite and >= 0, back_to_back_cpu_s > 0 and their ratio "
                             "finite, samples >= 2")
        return cls(*figures, samples)


def probe(making_cpu_s: Callable[[int], float], indices: Sequence[int], wait_s: float, epoch_cpu_s: float,
          stopped: Callable[[], bool] = lambda: False) -> Optional[AfterWait]:
    """``making_cpu_s`` of each of ``indices`` back to back (its CPU seconds making that sample, no read in them),
    each made once before, untimed (the caches warm), against ``epoch_cpu_s`` a sample; None for fewer than two,
    or once ``stopped()`` (a signal: the run's exit waits on no probe)."""
    if len(indices) < 2:
        return None
    made = []  # type: List[float]
    for index in list(indices) * 2:
        if stopped():
            return None
        made.append(making_cpu_s(index))
    costs = made[len(indices):]
    mean = statistics.mean(costs)
    if mean <= 0:
        return None
    return AfterWait(wait_s, epoch_cpu_s, mean, statistics.stdev(costs) / math.sqrt(len(costs)), len(costs))
