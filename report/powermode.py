"""The ``power_mode=M`` what-if: a workload's epoch time (and energy, where its power was measured) in a mode it
was not trained in, from the modes it was (each a comparison row whose knobs differ only in the mode: its
``mode_*`` hardware, trainer.mode). Per-epoch figures as the report read them from Prometheus; no timelines.

An epoch's time is reads + CPU + max(GPU, loader), parts that a mode changes differently:

  reads     the stall charged to storage (fetch_stall_storage): unchanged
  GPU       the compute, on a CUDA device: a power law in the GPU and memory (EMC) clocks,
            ``k * gpu^b1 * emc^b2``, fitted by least squares in logs
  loader    on a CUDA device with workers: their preprocessing (edgescope_train_epoch_preprocess_seconds, less
            their waits for a CPU) as CPU work, a power law in the CPU clock, on min(workers, the mode's cores'
            worth) at once (Loader): it runs beside the GPU, so a mode with fewer or slower cores can expose a
            loader that every measured mode hid; not recorded: no prediction
  CPU       the rest (the main process's steps on a CPU device, where the workers share its CPU, the host's work):
            a roofline (Roofline), CPU work W / min(the mode's cores' worth of CPU, the parallelism P the run can
            use) x clock^b: a run that keeps one core busy gains nothing from a second core, but every quota
            below one core costs it in full

not time ∝ 1/capacity: on the bench's 2-core machine a second core moved one loader worker and one torch thread
by -4 to +4 % (2.07 -> 1.98 s, 2.15 -> 2.24 s), while 35 % of one core slowed them 2.9-3.5x. Power is idle + a
term per domain, linear in the cores' worth of CPU, that x its clock, the GPU clock and the EMC clock, fitted the
same way, from measured power only (never replayed).

What the measured modes cannot fix is said, never guessed: a prediction exists only where the target's inputs
are a combination the measured ones determine (its change lies in the span of the measured changes, and every
parallelism the measured modes allow gives it); else the reason names the terms left open. A target input
outside the measured range is said (``extrapolated``), beyond FAR times it refused. Its error bar is its own
leave-one-mode-out cross-validation over the workload's measured modes (each predicted from the others, where
they fix it): the largest |relative error| of those made, beside every predicted mode with their count; with
fewer than 3 measured modes, or none of the left-out modes fixed by the others, there is none to give."""
import math
import statistics
from typing import Callable, List, NamedTuple, Optional, Sequence, Tuple

import numpy

from report import configuration
from trainer.mode import Mode

MIN_MODES = 2
MIN_CROSS_VALIDATED = 3  # leaving one out must leave two to fit
SMALL_PART = 0.01  # a part under this share of every epoch is kept as measured (its power law would fit noise)
CPU_CLOCK = ("CPU clock",)
LOADER_CLOCK = ("CPU clock (the workers' preprocessing)",)
LOADER_UNKNOWN = "whether the workers' preprocessing stays hidden behind the GPU (its seconds were not recorded)"
LOADER_UNKNOWN_WHY = ("the workers' preprocessing seconds (edgescope_train_epoch_preprocess_seconds) were not "
                      "recorded, so whether it stays hidden behind the GPU in this mode is unknown: train without "
                      "--timing none")
PARALLELISM_GRID = 400  # candidate parallelisms tried between half the lowest and twice the highest capacity
# the CPU part always has a thread running, and one thread uses a whole core: a run's parallelism is at least one
# core (below it a quota or a clock binds, never the run). A mode that gains less than its extra capacity says (on
# the bench's cgroup stand-in) that the quota strands CPU time across cores, not that the run is serial below one.
# On a CPU device only: a GPU run's host part may wait (a blocking sync) and use less than a core (Model.fit)
MIN_PARALLELISM = 1.0
GOLDEN = (1 + 5 ** 0.5) / 2
# a roofline simpler by a term (every mode bound by its capacity, or every one by the parallelism) is kept while
# it explains every measured mode within this: the run-to-run drift of a CPU-bound epoch on a shared machine
# (bench/powermode_accuracy.py: 1 core, 100 % measured at 2.07, 2.09, 2.15 and 2.64 s in four runs of one day,
# 4.05 s in a fifth under a heavier load)
EXPLAINED = 0.1
GPU_INPUTS = ("GPU clock", "memory clock")
POWER_INPUTS = ("CPU cores", "CPU cores x clock", "GPU clock", "memory clock")
TOLERANCE = 1e-9
# a target input beyond this factor of the measured range is refused (within it, marked extrapolated): a chosen
# limit, not a measured one; nothing here has checked a fit farther out than its measured span
FAR = 2.0
RANGED = (("cores' worth of CPU", Mode.cpu_capacity), ("CPU clock (GHz)", lambda m: m.cpu_max_hz / 1e9),
          ("GPU clock (GHz)", lambda m: m.gpu_max_hz / 1e9), ("memory clock (GHz)", lambda m: m.emc_max_hz / 1e9))


class Fit(NamedTuple):
    """Least squares of y on an intercept and inputs; which input changes the measurements determine."""
    projector: numpy.ndarray  # onto the span of the design's rows (rows: 1, inputs)
    coefficients: numpy.ndarray  # the minimum-norm solution: its predictions are unique where determined
    names: Tuple[str, ...]

    @classmethod
    def of(cls, xs: Sequence[Sequence[float]], ys: Sequence[float], names: Sequence[str]) -> "Fit":
        design = numpy.array([[1.0] + list(x) for x in xs])
        coefficients = numpy.linalg.lstsq(design, numpy.array(ys, dtype=float), rcond=None)[0]
        return cls(numpy.linalg.pinv(design).dot(design), coefficients, tuple(names))

    def _in_span(self, row: Sequence[float]) -> bool:
        v = numpy.array(row, dtype=float)
        projected = v.dot(self.projector)
        return bool(numpy.linalg.norm(v - projected) <= TOLERANCE * max(1.0, numpy.linalg.norm(v)))

    def determined(self, x: Sequence[float]) -> bool:
        """The measurements fix the prediction at ``x`` (it is the same for every solution)."""
        return self._in_span([1.0] + list(x))

    def unfixed(self) -> List[str]:
        """The inputs whose own term the measurements leave open (they never varied, or only together)."""
        return [name for i, name in enumerate(self.names)
                if not self._in_span([1.0 if j == i + 1 else 0.0 for j in range(len(self.names) + 1)])]

    def predict(self, x: Sequence[float]) -> float:
        return float(numpy.dot([1.0] + list(x), self.coefficients))


def _log(value: float) -> float:
    return math.log(value) if value > 0 else math.nan


def cpu_clock(mode: Mode) -> List[float]:
    """log CPU clock (NaN: unknown)."""
    return [_log(mode.cpu_max_hz)]


def gpu_inputs(mode: Mode) -> List[float]:
    return [_log(mode.gpu_max_hz), _log(mode.emc_max_hz)]


def power_inputs(mode: Mode) -> List[float]:
    """Per-domain activity: the cores' worth of CPU (the quota where it binds), that x the CPU clock (GHz), the
    GPU and EMC clocks (GHz); NaN where a clock is unknown."""
    return [mode.cpu_capacity(), mode.cpu_capacity() * mode.cpu_max_hz / 1e9, mode.gpu_max_hz / 1e9,
            mode.emc_max_hz / 1e9]


class Measured(NamedTuple):
    """One measured mode of a workload: its mean epoch split into the parts a mode changes, and its power."""
    name: str
    mode: Mode
    e2e_s: float
    reads_s: float
    gpu_s: float
    cpu_s: float  # e2e - reads - GPU compute
    power_w: Optional[float]
    workers: int = 0  # the loader's worker processes
    preprocess_s: Optional[float] = None  # their decode + augment + collate wall time, summed (None: not recorded)

    @classmethod
    def of_row(cls, row: dict) -> Optional["Measured"]:
        labels = configuration.of_record(row)
        mode = Mode.of_labels(labels)
        e2e = (row.get("e2e_seconds") or {}).get("mean")
        if mode is None or e2e is None:
            return None
        reads = (row.get("fetch_stall_storage_seconds") or {}).get("mean") or 0.0
        on_gpu = row.get("torch_device") == "cuda"  # a CPU device's compute is CPU work
        gpu = ((row.get("compute_seconds") or {}).get("mean") or 0.0) if on_gpu else 0.0
        power = None if row.get("power_replayed") else (row.get("average_power_watts") or {}).get("mean")
        try:
            workers = int(labels.get("workers") or 0)
        except ValueError:
            workers = 0
        return cls(mode_name(labels), mode, e2e, reads, gpu, max(e2e - reads - gpu, 0.0), power, workers,
                   (row.get("preprocess_seconds") or {}).get("mean"))

    def loader_work_s(self) -> float:
        """The workers' preprocessing in CPU-seconds: their summed wall time less the waits for a CPU where they
        outnumber the mode's cores' worth (edgescope_train_epoch_preprocess_seconds includes those waits)."""
        return (self.preprocess_s or 0.0) * min(self.workers, self.mode.cpu_capacity()) / self.workers

    def loader_wall_s(self) -> float:
        """The workers' preprocessing wall time per epoch: they run side by side."""
        return (self.preprocess_s or 0.0) / self.workers


def mode_name(labels: configuration.Labels) -> str:
    """A mode for people: nvpmodel's name where known, else its hardware (cores, quota, clocks)."""
    if labels.get("power_mode"):
        return str(labels["power_mode"])
    parts = [(labels.get("mode_cpu_cores"), "{} cores"), (labels.get("mode_cpu_quota_cores"), "quota {} cores"),
             (labels.get("mode_cpu_max_hz"), "CPU {} Hz"), (labels.get("mode_gpu_max_hz"), "GPU {} Hz"),
             (labels.get("mode_emc_max_hz"), "EMC {} Hz")]
    return ", ".join(form.format(value) for value, form in parts if value)


class Part(NamedTuple):
    """One figure of the epoch (a part of its time, or its power) fitted over the inputs every measured mode knew:
    a power law (least squares in logs) for a time, linear for the power."""
    inputs: Callable[[Mode], List[float]]
    names: Tuple[str, ...]
    mean: float
    fit: Optional[Fit]  # None: kept at its mean (a time under SMALL_PART of every measured epoch)
    known: Tuple[int, ...]  # the inputs finite in every measured mode (the fit's, in order)
    log: bool

    @classmethod
    def of(cls, inputs: Callable[[Mode], List[float]], names: Tuple[str, ...], modes: Sequence[Mode],
           values: Sequence[float], log: bool, keep: bool = False) -> "Part":
        """``keep``: the figure is too small to fit, keep it at its mean."""
        mean = statistics.mean(values)
        if keep:
            return cls(inputs, names, mean, None, (), log)
        xs = [inputs(m) for m in modes]
        known = tuple(i for i in range(len(names)) if all(math.isfinite(x[i]) for x in xs))
        fit = Fit.of([[x[i] for i in known] for x in xs], [math.log(max(v, 1e-9)) if log else v for v in values],
                     [names[i] for i in known])
        return cls(inputs, names, mean, fit, known, log)

    def unfixed(self, target: Optional[Mode] = None) -> List[str]:
        """The terms the measured modes leave open: all of them, or those ``target`` needs."""
        if self.fit is None:
            return []
        if target is None:
            return [n for i, n in enumerate(self.names) if i not in self.known] + self.fit.unfixed()
        x = self.inputs(target)
        unknown = ["{} (unknown in {})".format(n, "the measured modes" if i not in self.known else "that mode")
                   for i, n in enumerate(self.names) if (i in self.known) != math.isfinite(x[i])]
        if unknown:
            return unknown
        return [] if self.fit.determined([x[i] for i in self.known]) else self.fit.unfixed()

    def value(self, target: Mode) -> float:
        """The figure in ``target`` (check ``unfixed`` first)."""
        if self.fit is None:
            return self.mean
        x = self.inputs(target)
        y = self.fit.predict([x[i] for i in self.known])
        return math.exp(y) if self.log else y


class Roofline(NamedTuple):
    """The CPU part: CPU work W (core-seconds at the reference clock) done at min(cores' worth of CPU the mode
    gives, the parallelism P the run can use), the clock scaling it as a power law: ``W / min(c, P) * clock^b``.
    A run that keeps one core busy gains nothing from a second (P = 1) but every quota below one core costs it
    in full; P and W are fitted together (least squares in logs over a grid of P, ``of``), b by the clock's term
    where the measured modes' clocks differ. Where the measured modes leave P open (none was bound by its
    parallelism, or none by its capacity), every P that fits is kept: a prediction stands only where they all
    agree."""
    fits: Tuple[Tuple[float, Part], ...]  # (P, the fit of log(cpu_s * min(c, P)) over the clock), best first

    @classmethod
    def of(cls, modes: Sequence[Mode], cpu_s: Sequence[float], min_parallelism: float) -> "Roofline":
        """The simplest roofline that explains every measured mode within EXPLAINED: every mode bound by its
        capacity (P at or above the highest: P left open above it), or every one by the parallelism (P at or
        below the lowest: W left open below it), both kept where both do; else the best P, fitted, with every P
        that fits as well. P is never below ``min_parallelism``."""
        capacities = [m.cpu_capacity() for m in modes]
        lo = max(min_parallelism, min(capacities) / 2)
        hi = max(2 * max(capacities), 2 * lo)
        grid = [lo * (hi / lo) ** (i / (PARALLELISM_GRID - 1)) for i in range(PARALLELISM_GRID)] + [math.inf]

        def fitted(p: float) -> Tuple[float, float, float, Part]:
            """(sum of squared log residuals, the largest, P, the fit)."""
            work = [v * min(c, p) for v, c in zip(cpu_s, capacities)]
            part = Part.of(cpu_clock, CPU_CLOCK, modes, work, log=True)
            residuals = [math.log(part.value(m)) - math.log(max(w, 1e-9)) for m, w in zip(modes, work)]
            return sum(r * r for r in residuals), max(abs(r) for r in residuals), p, part
        fits = [fitted(p) for p in grid]
        simple = [f for f in fits if f[2] >= max(capacities) or f[2] <= min(capacities)]
        explained = [f for f in simple if f[1] <= math.log(1 + EXPLAINED)]
        if explained:
            return cls(tuple((p, part) for _, _, p, part in explained))
        i = min(range(len(fits)), key=lambda k: fits[k][0])
        if 0 < i < len(grid) - 2:  # a minimum inside the grid: golden-section search between its neighbours
            lo, hi = grid[i - 1], grid[i + 1]
            a, b = hi - (hi - lo) / GOLDEN, lo + (hi - lo) / GOLDEN
            fa, fb = fitted(a)[0], fitted(b)[0]
            for _ in range(60):  # each step keeps one of its two points: one new fit a step
                if fa <= fb:
                    hi, b, fb = b, a, fa
                    a = hi - (hi - lo) / GOLDEN
                    fa = fitted(a)[0]
                else:
                    lo, a, fa = a, b, fb
                    b = lo + (hi - lo) / GOLDEN
                    fb = fitted(b)[0]
            fits.append(fitted((lo + hi) / 2))
        best = min(f[0] for f in fits)  # every P as good is kept: a flat stretch leaves P open along it
        return cls(tuple((p, part) for r, _, p, part in sorted(fits, key=lambda f: f[0])
                         if r <= best + TOLERANCE * (1 + best)))

    def _values(self, target: Mode) -> List[float]:
        return [part.value(target) / min(target.cpu_capacity(), p) for p, part in self.fits]

    def unfixed(self, target: Optional[Mode] = None) -> List[str]:
        """The terms left open: the clock's, and the parallelism where the measured modes bound it only on one
        side (for ``target``: where the predictions of every P that fits disagree)."""
        clock = self.fits[0][1].unfixed(target)
        if clock:
            return clock
        ps = [p for p, _ in self.fits]
        if target is not None:
            values = self._values(target)
            if max(values) <= min(values) * (1 + 1e-6):
                return []
        elif len(ps) == 1 or max(ps) <= min(ps) * (1 + SMALL_PART):
            return []
        return ["CPU parallelism (the measured modes fit any from {:.3g} to {:.3g} cores)".format(min(ps), max(ps))]

    def value(self, target: Mode) -> float:
        return self._values(target)[0]


class Loader(NamedTuple):
    """The loader's workers beside a GPU: their preprocessing runs while the GPU computes, so the pipeline takes
    the longer of the two, not their sum. Its CPU work (a power law in the CPU clock, fitted like the Roofline's)
    is done on min(workers, the mode's cores' worth of CPU) at once: a mode with fewer or slower cores can expose
    a loader that every measured mode hid behind the GPU."""
    workers: int
    work: Part

    def unfixed(self, target: Optional[Mode] = None) -> List[str]:
        return self.work.unfixed(target)

    def value(self, target: Mode) -> float:
        """The workers' wall time per epoch in ``target``."""
        return self.work.value(target) / min(self.workers, target.cpu_capacity())


class Model(NamedTuple):
    """A workload's time and power models over its measured modes: an epoch is its reads + the rest of its CPU
    work + the pipeline's longer side, the GPU's compute or (with workers, on a GPU) their preprocessing."""
    reads_s: float
    cpu: Roofline  # the CPU work outside the pipeline (on a CPU device, the steps too)
    gpu: Part
    loader: Optional[Loader]  # None: no workers, or a CPU device (their work shares the CPU with the steps)
    loader_unknown: bool  # workers on a GPU whose preprocessing seconds were not recorded
    power: Optional[Part]  # None: power measured in fewer than MIN_MODES modes

    @classmethod
    def fit(cls, measured: Sequence[Measured]) -> "Model":
        modes = [m.mode for m in measured]
        gpu = [m.gpu_s for m in measured]
        small = all(v <= SMALL_PART * m.e2e_s for v, m in zip(gpu, measured))
        on_gpu = any(v > 0 for v in gpu)
        piped = on_gpu and all(m.workers > 0 for m in measured)
        unknown = piped and any(m.preprocess_s is None for m in measured)
        loader = Loader(measured[0].workers, Part.of(cpu_clock, LOADER_CLOCK, modes,
                                                     [m.loader_work_s() for m in measured], log=True)) \
            if piped and not unknown else None
        rest = [m.cpu_s if loader is None else max(m.e2e_s - m.reads_s - max(m.gpu_s, m.loader_wall_s()), 0.0)
                for m in measured]
        powered = [m for m in measured if m.power_w is not None]
        power = Part.of(power_inputs, POWER_INPUTS, [m.mode for m in powered], [m.power_w for m in powered],
                        log=False) if len(powered) >= MIN_MODES else None  # type: ignore
        # a CPU device's steps or workers always run; a GPU run's host part may wait on the GPU, using less
        cpu = Roofline.of(modes, rest, 0.0 if on_gpu else MIN_PARALLELISM)
        return cls(statistics.mean(m.reads_s for m in measured), cpu,
                   Part.of(gpu_inputs, GPU_INPUTS, modes, gpu, log=True, keep=small), loader, unknown, power)

    def unfixed(self, target: Optional[Mode] = None) -> List[str]:
        """The time terms the measured modes leave open (those ``target`` needs; empty: it is determined)."""
        if self.loader_unknown:
            return [LOADER_UNKNOWN]
        parts = [self.cpu, self.gpu] + ([self.loader] if self.loader is not None else [])  # type: List
        return [n for part in parts for n in part.unfixed(target)]

    def time(self, target: Mode) -> float:
        """The predicted epoch seconds in ``target`` (check ``unfixed`` first): reads as measured, the parts scaled."""
        pipeline = self.gpu.value(target)
        if self.loader is not None:
            pipeline = max(pipeline, self.loader.value(target))
        return self.reads_s + self.cpu.value(target) + pipeline


def outside(measured: Sequence[Measured], target: Mode) -> Tuple[List[str], List[str]]:
    """The target's inputs outside the measured modes' range (extrapolated: said beside the prediction), and
    those beyond FAR times it or not positive (refused: a fit over a narrower span says nothing so far out)."""
    marked, refused = [], []
    for name, of in RANGED:
        values = [of(m.mode) for m in measured]
        value = of(target)
        if not math.isfinite(value) or not all(math.isfinite(v) for v in values):
            continue
        lo, hi = min(values), max(values)
        if lo <= value <= hi:
            continue
        text = "{} {:.3g} (measured {:.3g} to {:.3g})".format(name, value, lo, hi)
        (refused if value <= 0 or value < lo / FAR or value > hi * FAR else marked).append(text)
    return marked, refused


def predict(measured: Sequence[Measured], target: Mode, model: Optional["Model"] = None) -> dict:
    """One mode's prediction from ``measured``: ``e2e_seconds`` (None with ``why`` where the measured modes do not
    fix it or it lies far outside them), ``extrapolated`` (its inputs outside the measured range), ``average_power_
    watts`` and ``energy_joules`` (None where power was not measured in 2 modes or does not fix this one,
    ``power_why`` then says). ``model``: ``Model.fit(measured)`` where the caller has it already."""
    marked, refused = outside(measured, target)
    out = {"e2e_seconds": None, "average_power_watts": None, "energy_joules": None, "why": None, "power_why": None,
           "extrapolated": marked}
    if refused:
        out["why"] = "far outside the measured modes: {}; measure a mode nearer it".format(", ".join(refused))
        return out
    model = Model.fit(measured) if model is None else model
    unfixed = model.unfixed(target)
    if model.loader_unknown:
        out["why"] = LOADER_UNKNOWN_WHY
        return out
    if unfixed:
        out["why"] = "the measured modes do not fix {}: measure modes that vary each on its own".format(
            ", ".join(unfixed))
        return out
    out["e2e_seconds"] = model.time(target)
    power_unfixed = None if model.power is None else model.power.unfixed(target)
    if power_unfixed is None:
        out["power_why"] = "power measured in fewer than {} of these modes".format(MIN_MODES)
    elif power_unfixed:
        out["power_why"] = "the measured modes do not fix the power of {}".format(", ".join(power_unfixed))
    else:
        out["average_power_watts"] = model.power.value(target)  # type: ignore
        out["energy_joules"] = out["average_power_watts"] * out["e2e_seconds"]
    return out


def cross_validate(measured: Sequence[Measured]) -> dict:
    """Leave one measured mode out, predict it from the others: per mode the relative time and energy errors
    (None where the others do not fix it); the bars, the largest |error| (``time_error_ratio``,
    ``energy_error_ratio``; None without one error to give) and how many errors each is the largest of
    (``time_errors``, ``energy_errors``). The largest, not the root mean square (always below the worst): of n
    exchangeable errors, a new one exceeds all n with probability 1 / (n + 1)."""
    errors = []
    for i, left_out in enumerate(measured):
        others = [m for j, m in enumerate(measured) if j != i]
        if len(others) < MIN_MODES:
            continue
        p = predict(others, left_out.mode)
        time_error = None if p["e2e_seconds"] is None else p["e2e_seconds"] / left_out.e2e_s - 1
        energy_error = None if p["energy_joules"] is None or left_out.power_w is None else \
            p["energy_joules"] / (left_out.power_w * left_out.e2e_s) - 1
        errors.append({"mode": left_out.name, "time_error_ratio": time_error, "energy_error_ratio": energy_error})

    def made(name: str) -> List[float]:
        return [abs(e[name]) for e in errors if e[name] is not None]
    return {"errors": errors, "time_error_ratio": max(made("time_error_ratio"), default=None),
            "energy_error_ratio": max(made("energy_error_ratio"), default=None),
            "time_errors": len(made("time_error_ratio")), "energy_errors": len(made("energy_error_ratio"))}
