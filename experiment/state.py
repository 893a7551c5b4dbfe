"""The sweep's journal (``state.jsonl`` in the output directory): one JSON line
per event, appended and flushed, so a crash loses nothing already written. A
run is done once its last event is ``completed``; a run that ``started`` and
never completed (killed, power cut) or ``failed`` is redone next time."""
import json
import os
import time
from typing import Dict, List


class Journal:
    def __init__(self, directory: str) -> None:
        self.path = os.path.join(directory, "state.jsonl")

    def events(self) -> List[dict]:
        if not os.path.exists(self.path):
            return []
        out = []
        with open(self.path) as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        out.append(json.loads(line))
                    except ValueError:
                        continue  # a line cut short by a crash: that run is simply redone
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
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        line = json.dumps(dict({"time": time.time(), "run_id": run_id, "event": event}, **details), sort_keys=True)
        with open(self.path, "a") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
