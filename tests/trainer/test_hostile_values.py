"""Values from outside taken as fact no longer: a hostile exporter's counter (NaN, inf, 1e300, negative), a
negative interval, a counter that did not move in a short epoch, a checkpoint saying epoch -5. Each passes the
one table of physical ranges (exporter/ranges.py) or is missing with a note; --results stays strict JSON."""
import http.server
import json
import math
import threading

import pytest
import torch
from hypothesis import given, settings, strategies as st

from exporter.ranges import MAX_MAGNITUDE
from trainer import checkpoint, cli
from trainer.energy import EnergyUnavailable, epoch_energy, reading_from

from .conftest import small_run_args

HOSTILE = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([math.nan, math.inf, -math.inf,
                                                                                      1e300, -5.0, 0.0]))


def exposition(joules: float, watts: float, interval: float) -> list:
    return [("edgescope_board_energy_joules_total", {}, joules), ("edgescope_board_power_watts", {}, watts),
            ("edgescope_exporter_interval_seconds", {}, interval),
            ("edgescope_power_source_info", {"source": "tegrastats"}, 1.0)]


def strict(record: dict) -> dict:
    """``record`` through strict JSON and back: NaN or an infinity would raise."""
    return json.loads(json.dumps(record, allow_nan=False))


@settings(max_examples=300, deadline=None)
@given(start=HOSTILE, end=HOSTILE, watts=HOSTILE, interval=HOSTILE, seconds=st.floats(0.001, 1e4))
def test_an_epochs_energy_from_any_exposition_is_physical_or_missing_with_a_note(start, end, watts, interval,
                                                                                 seconds):
    readings = []
    for joules, now in ((start, 1.0), (end, 1.0 + seconds)):
        try:
            readings.append(reading_from(exposition(joules, watts, interval), now))
        except EnergyUnavailable as error:
            assert "edgescope_board_energy_joules_total" in str(error)
            readings.append(str(error))
    used = epoch_energy(readings[0], readings[1], "restarted")
    strict(used._asdict())
    if used.joules is None:
        assert used.note.startswith("energy unknown: ") and used.average_power_watts is None
        return
    assert 0 <= used.joules <= MAX_MAGNITUDE and 0 <= used.average_power_watts <= 1000, used
    assert used.bound_joules is None or 0 <= used.bound_joules <= MAX_MAGNITUDE, used  # never a negative bound


def test_a_counter_that_did_not_move_while_the_board_drew_power_is_no_zero():
    """A 0.4 s epoch read through an exporter sampling every 1 s: the counter has not moved, yet the board drew
    power; "power 0.000 W" would be wrong, so the energy is missing with why."""
    used = epoch_energy(reading_from(exposition(50.0, 4.0, 1.0), 1.0), reading_from(exposition(50.0, 4.0, 1.0), 1.4),
                        "restarted")
    assert used.joules is None and "the counter did not move in this 0.40 s epoch" in used.note, used


class Hostile(http.server.BaseHTTPRequestHandler):
    """An exporter whose energy counter reads 5 J, then NaN, then +Inf, then 1e300, then -5."""
    values = ["5", "NaN", "+Inf", "1e300", "-5"]
    served = 0

    def do_GET(self) -> None:
        value = self.values[min(Hostile.served, len(self.values) - 1)]
        Hostile.served += 1
        body = "edgescope_board_energy_joules_total {}\n".format(value).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def test_a_hostile_exporters_counter_leaves_the_energy_missing_and_results_strict_json(cifar_dir, tmp_path,
                                                                                       capsys):
    server = http.server.HTTPServer(("127.0.0.1", 0), Hostile)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = "http://127.0.0.1:{}/metrics".format(server.server_port)
        assert cli.main(small_run_args(cifar_dir, str(tmp_path)) + ["--exporter-url", url]) == 0
    finally:
        server.shutdown()
        server.server_close()
    out, err = capsys.readouterr()
    with open(str(tmp_path / "results.jsonl")) as f:
        records = [json.loads(line, parse_constant=lambda name: pytest.fail("not strict JSON: " + name)) for line in f]
    assert [r["energy_joules"] for r in records] == [None, None]
    assert "edgescope_board_energy_joules_total nan: not finite" in err, err
    assert "energy nan" not in out and "energy inf" not in out


@pytest.mark.parametrize("epoch, history", [(-5, []), (1, [0]), (0, [3])])
def test_a_checkpoint_whose_epoch_and_history_disagree_is_refused_in_one_line(tmp_path, epoch, history):
    """A checkpoint saying epoch -5 trained epochs -4..-2: the epoch and the history are checked at load."""
    torch.save({"epoch": epoch, "run_id": "r", "history": [{"epoch": n} for n in history], "model": {},
                "optimizer": {}}, str(tmp_path / checkpoint.CHECKPOINT_FILE))
    with pytest.raises(cli.UsageError) as caught:
        checkpoint.load(str(tmp_path), torch.device("cpu"))
    assert "says epoch {} after a history of epochs {}".format(epoch, history) in str(caught.value)
    assert "\n" not in str(caught.value)
