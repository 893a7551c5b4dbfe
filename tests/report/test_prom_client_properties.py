"""The Prometheus API client against a real local HTTP server answering with generated JSON of any
shape: the report either comes out (every number finite or missing) or stops with one ReportError
line; nothing else escapes. Plus the shapes the issue found, and the argument errors."""
import json
import math
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlparse

import pytest
from hypothesis import given, settings, strategies as st

from report.cli import main
from report.collect import collect
from report.html_page import as_html
from report.prom import Prometheus, ReportError
from report.render import build, render
from tests.processes import free_port

SINCE, UNTIL = 1.7e9, 1.7e9 + 3600


class Answers(BaseHTTPRequestHandler):
    """Instant queries over a range selector get the matrix answer, other instant queries the vector
    answer, range queries the range answer (bytes, as generated); a query naming a metric in
    `by_metric` gets that answer instead."""

    def do_GET(self):
        url = urlparse(self.path)
        query = parse_qs(url.query).get("query", [""])[0]
        kind = "range" if url.path.endswith("query_range") else (
            "matrix" if query.endswith("]") and not query.startswith("last_over_time") else "vector")
        body = next((b for name, b in self.server.by_metric.items() if name in query), self.server.answers[kind])
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def fake_prometheus():
    server = HTTPServer(("127.0.0.1", free_port()), Answers)
    server.status = 200
    server.answers = {}
    server.by_metric = {}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def encoded(answer):
    return answer if isinstance(answer, bytes) else json.dumps(answer).encode()


def report_or_error(server, answers, status=200, runs=(), by_metric=None):
    """collect + build + render against the answers; returns the JSON report, or the ReportError."""
    server.answers = {k: encoded(v) for k, v in answers.items()}
    server.by_metric = {k: encoded(v) for k, v in (by_metric or {}).items()}
    server.status = status
    try:
        collected = collect(Prometheus("http://127.0.0.1:{}".format(server.server_port), 5.0), list(runs),
                            SINCE, UNTIL)
    except ReportError as e:
        assert "\n" not in str(e) and str(e)
        return e
    report = build(collected, 1, {"since": SINCE, "until": UNTIL})
    for fmt in ("table", "csv", "markdown"):
        render(report, fmt, "epochs")
    text = render(report, "json", "epochs")
    for record in report["epochs"]:
        for key, value in record.items():
            assert not isinstance(value, float) or math.isfinite(value), (key, value)
    return json.loads(text)


JSON = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8)),
                    lambda inner: st.one_of(st.lists(inner, max_size=3),
                                            st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                    max_leaves=10)
NUMBER_TEXT = st.one_of(st.sampled_from(["NaN", "+Inf", "-Inf", "1e400", "0", "12.5", "abc", ""]),
                        st.floats(min_value=0, max_value=1e10).map(repr))
TIMES = st.one_of(st.floats(min_value=SINCE - 600, max_value=UNTIL + 600), st.sampled_from([float("nan"), 1e400]),
                  st.text(max_size=4))
LABELS = st.fixed_dictionaries({"run_id": st.sampled_from(["r1", "r2", ""]), "epoch": st.sampled_from(["0", "1", "x", "-1", "\u00b2", "\u0661", "9" * 5000]),
                                "device": st.sampled_from(["nx", ""])},
                               optional={"dataset": st.text(max_size=5), "data_dir": st.text(max_size=5)})
POINT = st.one_of(st.tuples(TIMES, NUMBER_TEXT).map(list), JSON)


def success(result_type, result):
    return {"status": "success", "data": {"resultType": result_type, "result": result}}


VECTOR = st.one_of(
    st.lists(st.fixed_dictionaries({"metric": LABELS, "value": POINT}), max_size=4).map(lambda r: success("vector", r)),
    st.builds(success, st.one_of(st.sampled_from(["vector", "matrix", None]), JSON), JSON),
    JSON)
MATRIX = st.one_of(
    st.lists(st.fixed_dictionaries({"metric": LABELS, "values": st.lists(POINT, max_size=6)}), max_size=3)
    .map(lambda r: success("matrix", r)),
    st.builds(success, st.one_of(st.sampled_from(["vector", "matrix", None]), JSON), JSON),
    JSON)


@settings(max_examples=150, deadline=None)
@given(vector=VECTOR, matrix=MATRIX, range_=MATRIX)
def test_any_json_answer_gives_a_report_or_one_line(fake_prometheus, vector, matrix, range_):
    report_or_error(fake_prometheus, {"vector": vector, "matrix": matrix, "range": range_})


GOOD_POINT = st.tuples(st.floats(min_value=SINCE - 600, max_value=UNTIL + 600), NUMBER_TEXT).map(list)


@settings(max_examples=150, deadline=None)
@given(vector=st.lists(st.fixed_dictionaries({"metric": LABELS, "value": GOOD_POINT}), min_size=1, max_size=6),
       matrix=st.lists(st.fixed_dictionaries({"metric": LABELS, "values": st.lists(GOOD_POINT, max_size=8)}),
                       max_size=4))
def test_well_formed_answers_with_any_labels_and_values(fake_prometheus, vector, matrix):
    report_or_error(fake_prometheus, {"vector": success("vector", vector), "matrix": success("matrix", matrix),
                                      "range": success("matrix", matrix)})


@settings(max_examples=100, deadline=None)
@given(body=st.binary(max_size=200), status=st.sampled_from([200, 400, 500, 503]))
def test_any_bytes_answer_is_one_line(fake_prometheus, body, status):
    report_or_error(fake_prometheus, {"vector": body, "matrix": body, "range": body}, status)


@pytest.mark.parametrize("answer,needle", [
    (success("vector", None), "no data.result list"),
    ([], "the answer is not a JSON object"),
    ("success", "the answer is not a JSON object"),
    ({"status": "success", "data": {"result": []}}, "resultType None, expected 'vector'"),
    ({"status": "success", "data": []}, "no data.result list"),
    (success("vector", [{"metric": None, "value": [1, "1"]}]), "a series without a metric object"),
    (success("vector", [{"metric": {}, "value": "1"}]), "a sample that is not [time, \"value\"]"),
    (b"[" * 100000, "without the Prometheus API's JSON"),
    (b"<html>hello</html>", "without the Prometheus API's JSON"),
])
def test_wrong_shapes_are_one_report_error(fake_prometheus, answer, needle):
    error = report_or_error(fake_prometheus, {"vector": answer, "matrix": answer, "range": answer})
    assert isinstance(error, ReportError) and needle in str(error), error


def test_nan_epoch_start_is_missing_not_a_crash(fake_prometheus):
    labels = {"run_id": "r1", "epoch": "1", "device": "nx"}
    vector = success("vector", [{"metric": labels, "value": [UNTIL, str(UNTIL - 60)]}])
    nan_start = success("vector", [{"metric": labels, "value": [UNTIL, "NaN"]}])
    report = report_or_error(fake_prometheus, {"vector": vector, "matrix": success("matrix", []),
                                               "range": success("matrix", [])},
                             by_metric={"edgescope_train_epoch_start_timestamp_seconds": nan_start,
                                         "edgescope_train_epoch_energy_joules": success("vector", []),
                                         "edgescope_train_epoch_average_power_watts": success("vector", [])})
    assert not isinstance(report, ReportError), report
    epoch = report["epochs"][0]
    assert epoch["start_timestamp_seconds"] is None and epoch["end_timestamp_seconds"] == UNTIL - 60
    assert epoch["energy_joules"] is None


@pytest.mark.parametrize("argv,needle", [
    (["--since", "nan"], "argument --since: 'nan' is not a time between 1970 and 9999"),
    (["--since=-inf"], "argument --since: '-inf' is not a time between 1970 and 9999"),
    (["--until", "1e400"], "argument --until: '1e400' is not a time between 1970 and 9999"),
    (["--timeout", "0"], "argument --timeout: 0 must be a finite number > 0 and <= 86400"),
    (["--timeout", "inf"], "argument --timeout: inf must be a finite number > 0"),
    (["--format", "xlsx"], "argument --format: invalid choice: 'xlsx'"),
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--run", b"caf\xe9".decode("utf-8", "surrogateescape")], "argument --run: 'caf\\udce9' is not valid UTF-8"),
    (["--prometheus", "http://a\nb"], "argument --prometheus: 'http://a\\nb' holds a control character"),
])
def test_argument_errors_are_one_line_exit_2(capsys, argv, needle):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    out, err = capsys.readouterr()
    assert exit_.value.code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("edgescope-report: error: ") and needle in err, err



SURROGATE_TEXT = st.tuples(st.text(max_size=3), st.sampled_from(["\ud800", "\udfff", "\udc00"]),
                           st.text(max_size=3)).map("".join)


@settings(max_examples=40, deadline=None)
@given(labels=st.dictionaries(st.sampled_from(["run_id", "dataset", "power_mode", "\udc80key"]), SURROGATE_TEXT,
                              min_size=1, max_size=3))
def test_a_lone_surrogate_in_a_label_becomes_text_every_output_can_encode(fake_prometheus, labels):
    """JSON may carry "\\ud800", which is no character: a table or html page holding it cannot be written as
    UTF-8 (a traceback in the report). The client makes each one U+FFFD where the answer comes in."""
    fake_prometheus.answers = {"vector": encoded(success("vector", [{"metric": labels, "value": [SINCE, "1.5"]}]))}
    fake_prometheus.by_metric, fake_prometheus.status = {}, 200
    ((got, value),) = Prometheus("http://127.0.0.1:{}".format(fake_prometheus.server_port), 5.0).vector("up", SINCE)
    text = json.dumps(got, ensure_ascii=False)
    text.encode("utf-8")
    assert value == 1.5 and len(got) == len(labels) and "\ufffd" in text
