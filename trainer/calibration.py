"""How far a what-if's prediction can be off: the bar it carries, for the trainer's summary and the report alike.

A prediction (the epoch − its replay + the replay with one change, trainer/timeline.py) varies as the epochs
do, so their spread alone misses what the model itself gets wrong: n = 2 once printed 10.0005 ± 0.0007 s while
the misses sat three bars away. A prediction's bar (one sigma) therefore combines, relative to its mean:

- the kept epochs' spread s (sample standard deviation) times Student's t for n − 1 degrees of freedom at one
  sigma (its 0.8413 quantile: 1.84 for n = 2, 1.32 for 3, 1.14 for 5, towards 1 for many): s from a few epochs
  is itself unsure, and t widens it to keep one sigma's coverage. s, not s/√n: a run's epochs are not
  independent draws of what a run of the change will do (the machine drifts more between runs than between
  epochs), so the mean's standard error would claim a precision the runs do not have;
- the model's error for that kind of what-if: the root-mean-square of (predicted − measured) / measured over
  the accuracy bench's cases of that kind (bench/whatif_accuracy.py), kept in ``whatif_calibration.json``
  beside this module, which the bench regenerates. It holds the bench's own epoch noise too, so on a machine as
  noisy as the bench's the bar errs wide.

    bar = mean · sqrt((t · s / mean)² + relative_error²)

A kind the table lacks (``compute_speedup``: a CPU bench cannot check it), or every kind when the table is
missing or damaged, is *not calibrated*: its bar is the spread term alone and wherever it is shown it says so.
It is shown rather than withheld because a damaged table would otherwise silence every prediction, and a
prediction never picks a configuration (report/pareto.py recommends from measured points only).

``EDGESCOPE_WHATIF_CALIBRATION=FILE`` reads another table (one the bench wrote on your own board). Torch-free:
the report reads it too."""
import json
import math
import os
from functools import lru_cache
from typing import Dict, NamedTuple, Optional

TABLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "whatif_calibration.json")
ENVIRONMENT = "EDGESCOPE_WHATIF_CALIBRATION"
VERSION = 1
ONE_SIGMA = 0.5 * (1.0 + math.erf(1.0 / math.sqrt(2.0)))  # P(Z < 1) = 0.8413: a one-sigma bar's upper quantile
NOT_CALIBRATED = "not calibrated: its bar is the epochs' spread alone"  # beside every prediction shown without it


class Calibration(NamedTuple):
    relative_errors: Dict[str, float]  # what-if kind -> the bench's RMS relative error
    cases: Dict[str, int]  # what-if kind -> how many bench cases it comes from
    path: str
    problem: Optional[str]  # why the table could not be used (then relative_errors is empty)


class Bar(NamedTuple):
    seconds: float  # the prediction's one-sigma bar
    relative_error: Optional[float]  # the model's error that went into it; None: not calibrated
    note: str  # what the bar holds, for the basis a prediction is shown with


def kind(what_if: str) -> str:
    """A what-if's kind: its name before any ``=`` (storage_bps=4e6 -> storage_bps)."""
    return what_if.split("=", 1)[0]


def load(path: Optional[str] = None) -> Calibration:
    """The table at ``path`` ($EDGESCOPE_WHATIF_CALIBRATION, else the one shipped beside this module); a table
    that cannot be read or is not one gives an empty table and ``problem``: one line naming it and the fix."""
    path = path or os.environ.get(ENVIRONMENT) or TABLE
    try:
        with open(path, encoding="utf-8") as f:
            table = json.load(f)
        kinds = table["kinds"] if isinstance(table, dict) and table.get("version") == VERSION else None
        if not isinstance(kinds, dict):
            raise ValueError("not a version {} table with \"kinds\"".format(VERSION))
        errors, cases = {}, {}
        for name, entry in kinds.items():
            entry = entry if isinstance(entry, dict) else {}
            relative, count = entry.get("relative_error"), entry.get("cases")
            if not (isinstance(relative, (int, float)) and math.isfinite(relative) and relative >= 0
                    and isinstance(count, int) and count > 0):
                raise ValueError("kind {!r} needs a relative_error >= 0 and cases > 0".format(name))
            errors[name], cases[name] = float(relative), count
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        return Calibration({}, {}, path, "what-if calibration table {}: {}; every what-if's bar is its epochs' "
                           "spread alone, marked not calibrated (reinstall edgescope, or set {} to a table "
                           "bench/whatif_accuracy.py wrote)".format(
                               path, getattr(error, "strerror", None) or error, ENVIRONMENT))
    return Calibration(errors, cases, path, None)


def _t_below(x: float, dof: int) -> float:
    """P(T < x) for Student's t with ``dof`` degrees of freedom, x >= 0 (Simpson's rule over its density)."""
    scale = math.exp(math.lgamma((dof + 1) / 2.0) - math.lgamma(dof / 2.0)) / math.sqrt(dof * math.pi)
    steps = 200
    h = x / steps
    density = [scale * (1.0 + (i * h) ** 2 / dof) ** (-(dof + 1) / 2.0) for i in range(steps + 1)]
    return 0.5 + h / 3.0 * (density[0] + density[-1] + 4 * sum(density[1:-1:2]) + 2 * sum(density[2:-1:2]))


@lru_cache(maxsize=None)
def student_t(epochs: int) -> float:
    """The factor on a spread of ``epochs`` (>= 2) values for a one-sigma bar: Student's t at ONE_SIGMA with
    epochs − 1 degrees of freedom (1.84 for 2 epochs; 1 for the normal it tends to)."""
    if epochs < 2:
        raise ValueError("a spread needs 2 or more epochs, not {}".format(epochs))
    low, high = 1.0, 2.0  # t(1 dof) = tan(0.3413 pi) = 1.84 is the widest
    for _ in range(40):
        middle = (low + high) / 2
        low, high = (middle, high) if _t_below(middle, epochs - 1) < ONE_SIGMA else (low, middle)
    return (low + high) / 2


def spread_bar(spread: Optional[float], epochs: int) -> float:
    """A measured mean's bar from its epochs' spread: t · s (0 where one epoch gives no spread)."""
    return 0.0 if spread is None or epochs < 2 else student_t(epochs) * spread


def bar(mean: float, spread: float, epochs: int, what_if: str, table: Calibration) -> Bar:
    """A prediction's bar: its ``epochs``' spread widened by Student's t, with the model's error for the kind of
    ``what_if`` from ``table`` (the spread alone, noted not calibrated, where the table has none)."""
    t = student_t(epochs)
    what = kind(what_if)
    error = table.relative_errors.get(what)
    widened = "the epochs' spread × {:.2f} (Student t, n = {})".format(t, epochs)
    if error is None:
        why = table.problem.split(";")[0] if table.problem else "the accuracy bench has no {} cases".format(what)
        return Bar(t * spread, None, "not calibrated ({}): the bar is {} alone".format(why, widened))
    return Bar(math.hypot(t * spread, error * mean), error, "bar: {} and the model's {:.1f} % error for {} "
               "(accuracy bench, {} cases)".format(widened, 100 * error, what, table.cases[what]))
