"""Progress bars (tqdm) on a terminal only: where stdout is a file or a pipe (logs, the experiment
runner's children, CI) nothing changes and the output stays one line per event. Without tqdm, no bar."""
import sys
import time
from typing import Any, Optional

from trainer.meter import BatchTiming


def terminal_bar(total: Optional[int], desc: str, unit: str, initial: int = 0) -> Any:
    """A tqdm bar on stdout if stdout is a terminal and tqdm is installed, else None."""
    if not sys.stdout.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit=unit, initial=initial, file=sys.stdout, leave=False,
                dynamic_ncols=True)


def close_bar(bar: Any) -> None:
    """Draws the bar's final state, then clears it (``leave=False``): the terminal keeps only the log lines."""
    if bar is not None:
        bar.refresh()
        bar.close()


def say(bar: Any, line: str) -> None:
    """Prints a log line, above the bar when there is one."""
    if bar is None:
        print(line, flush=True)
    else:
        bar.write(line)


class EpochProgress:
    """edgescope-train's bar for each epoch: batches done, samples/s, and the running fetch-stall share
    (stall over batch time of the steps timed so far; on a GPU the lazy timings trail the bar a little)."""

    def __init__(self) -> None:
        self.bar = None  # type: Any
        self._stall_s = self._batch_s = 0.0
        self._samples = 0
        self._began = 0.0

    def start(self, epoch: int, epochs: int, batches: int) -> None:
        self.bar = terminal_bar(batches, "epoch {}/{}".format(epoch, epochs), "batch")
        self._stall_s = self._batch_s = 0.0
        self._samples = 0
        self._began = time.perf_counter()

    def observe(self, timing: BatchTiming) -> None:
        self._stall_s += timing.fetch_stall_s
        self._batch_s += timing.batch_s

    def advance(self, samples: int) -> None:
        if self.bar is None:
            return
        self._samples += samples
        elapsed = time.perf_counter() - self._began
        self.bar.set_postfix_str("{:.1f} samples/s, stall {}".format(
            self._samples / elapsed if elapsed > 0 else 0.0,
            "{:.0%}".format(self._stall_s / self._batch_s) if self._batch_s > 0 else "-"), refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        close_bar(self.bar)
        self.bar = None
