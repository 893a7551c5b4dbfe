"""The sweep's journal (``state.jsonl`` in the output directory): one JSON line
per event, appended whole and fsync'ed (exporter.atomicfile), so a crash or a full disk loses nothing
already written and a torn last line is never read as an event. A
run is done once its last event is ``completed``; a run that ``started`` and
never completed (killed, power cut) or ``failed`` is redone next time."""
import json
import os
import sys
import time
from typing import Dict, List, Set

from exporter import atomicfile
from exporter.readfile import Unreadable


class JournalError(Exception):
    """The journal cannot be written: one line naming it and the fix."""


class Journal:
    def __init__(self, directory: str) -> None:
        self.path = os.path.join(directory, "state.jsonl")
        self._noted = set()  # type: Set[str]

    def events(self) -> List[dict]:
        if not os.path.exists(self.path):
            return []
        try:
            lines, note = atomicfile.read_lines(self.path)
        except (OSError, Unreadable) as error:
            raise JournalError("cannot read the sweep's journal {}: {}; move it aside (its runs are then redone) or "
                               "pick another output.dir in the plan".format(self.path,
                                                                              getattr(error, "strerror", None) or error))
        if note:
            self._note(note + ": that run is simply redone")
        out = []
        for line in lines:
            try:
                event = json.loads(line)
            except (ValueError, RecursionError):
                continue  # not an event (edited by hand): the run it was about is redone
            # checked once here, where the file comes in: every reader takes event["run_id"] and ["event"]
            if isinstance(event, dict) and all(isinstance(event.get(key), str) for key in ("run_id", "event")):
                out.append(event)
            else:
                self._note("{}: a line that is not an event (an object with text run_id and event) left out; "
                           "the run it was about is redone".format(self.path))
        return out

    def last_events(self) -> Dict[str, dict]:
        """Each run's latest event."""
        return {event["run_id"]: event for event in self.events()}

    def last_status(self) -> Dict[str, str]:
        return {run_id: event["event"] for run_id, event in self.last_events().items()}

    def attempts(self, run_id: str) -> int:
        """How many times the run was started."""
        return sum(1 for event in self.events() if event["run_id"] == run_id and event["event"] == "started")

    def record(self, run_id: str, event: str, **details) -> None:
        """Appends the event whole (fsync'ed) or not at all; a torn last line is set aside first."""
        line = json.dumps(dict({"time": time.time(), "run_id": run_id, "event": event}, **details), sort_keys=True)
        try:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            note = atomicfile.append_lines(self.path, [line])
        except OSError as error:
            raise JournalError(atomicfile.cannot_write("the sweep's journal", self.path, error,
                                                       "pick another output.dir in the plan"))
        if note:
            self._note(note)

    def _note(self, note: str) -> None:
        """Each note once: every read would repeat it."""
        if note not in self._noted:
            print("edgescope-experiment: note: " + note, file=sys.stderr, flush=True)
            self._noted.add(note)
