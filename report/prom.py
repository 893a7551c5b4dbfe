"""A small client for the Prometheus HTTP API (works with any server that
speaks it: Prometheus, VictoriaMetrics, Thanos, Mimir).

Every failure becomes a ReportError with one line a person can act on; an
answer of any shape the API does not have (a null result, a list where a
mapping belongs, a missing resultType) is one of those failures.
"""
import math
import re
from typing import Any, Dict, List, Tuple

import requests

from exporter import fetch

Labels = Dict[str, str]
Sample = Tuple[float, float]
MAX_ANSWER_BYTES = 256 << 20  # a query answer; json.loads holds several times this in memory
LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class ReportError(Exception):
    """A problem the user must fix; its message is one line naming the fix."""


def promql_string(text: str) -> str:
    """A PromQL double-quoted string literal holding ``text`` verbatim."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unicode_text(text: str) -> str:
    """``text`` with each lone surrogate (JSON's ``"\\ud800"``: no character, so no UTF-8 table, page or
    terminal can take it) as U+FFFD; JSON has already joined every valid pair."""
    return LONE_SURROGATE.sub("\ufffd", text)


def duration(seconds: float) -> str:
    """A PromQL range duration covering at least ``seconds``."""
    return "{}s".format(max(1, int(seconds + 0.999)))


class Prometheus:
    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = fetch.session()

    def _get(self, path: str, params: Dict[str, str], result_type: str) -> List[dict]:
        """The ``result`` list of a query answer whose ``resultType`` is ``result_type``."""
        where = self.url + path
        try:
            response = fetch.get(self.session, where, self.timeout, MAX_ANSWER_BYTES, params=params)
        except fetch.AnswerTooLarge:
            raise ReportError("Prometheus at {} answered more than {} MiB to the query {!r}; narrow the runs or "
                              "the time range".format(self.url, MAX_ANSWER_BYTES >> 20, params.get("query")))
        except requests.exceptions.Timeout:
            raise ReportError("Prometheus at {} did not answer within {:g} s; check --prometheus "
                              "or raise --timeout".format(self.url, self.timeout))
        except (requests.exceptions.RequestException, UnicodeError) as exc:  # UnicodeError: a non-UTF-8 URL
            raise ReportError("Prometheus at {} is unreachable ({}); check --prometheus".format(
                self.url, type(exc).__name__))
        try:
            body = response.json()
        except (ValueError, RecursionError):
            raise ReportError("{} answered HTTP {} without the Prometheus API's JSON; is --prometheus "
                              "the server's base URL?".format(where, response.status_code))
        if not isinstance(body, dict):
            raise self._shape(params, "the answer is not a JSON object")
        if body.get("status") != "success":
            error = body.get("error")
            raise ReportError("Prometheus at {} refused the query {!r}: {}".format(
                self.url, params.get("query"), str(error)[:200] if error else "HTTP {}".format(response.status_code)))
        data = body.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("result"), list):
            raise self._shape(params, "no data.result list")
        if data.get("resultType") != result_type:
            raise self._shape(params, "resultType {!r}, expected {!r}".format(data.get("resultType"), result_type))
        for item in data["result"]:
            labels = item.get("metric") if isinstance(item, dict) else None
            if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
                raise self._shape(params, "a series without a metric object of string labels")
            item["metric"] = {unicode_text(k): unicode_text(v) for k, v in labels.items()}
        return data["result"]

    def _shape(self, params: Dict[str, str], what: str) -> ReportError:
        return ReportError("Prometheus at {} answered the query {!r} in a shape its HTTP API never has ({}); is "
                           "--prometheus a Prometheus-compatible server?".format(self.url, params.get("query"), what))

    def _points(self, params: Dict[str, str], pairs: Any) -> List[Sample]:
        """[[unix_s, "value"], ...] as floats; NaN and infinite values are left out (no number is known
        there), a point of any other form is a ReportError."""
        if not isinstance(pairs, list):
            raise self._shape(params, "values that are not a list")
        out = []
        for pair in pairs:
            try:
                t, v = pair
                t, v = float(t), float(v)
            except (TypeError, ValueError, OverflowError):
                raise self._shape(params, "a sample that is not [time, \"value\"]")
            if not math.isfinite(t):
                raise self._shape(params, "a sample time that is not finite")
            if math.isfinite(v):
                out.append((t, v))
        return out

    def vector(self, query: str, at: float) -> List[Tuple[Labels, float]]:
        """An instant query: one value per series (series whose value is NaN or infinite are left out)."""
        params = {"query": query, "time": repr(at)}
        out = []
        for item in self._get("/api/v1/query", params, "vector"):
            points = self._points(params, [item.get("value")])
            out += [(item["metric"], value) for _, value in points]
        return out

    def raw(self, selector: str, start: float, end: float) -> List[Tuple[Labels, List[Sample]]]:
        """The raw scraped samples of ``selector`` with timestamps in [start, end]
        (a range-vector selector evaluated at ``end``)."""
        params = {"query": "{}[{}]".format(selector, duration(end - start)), "time": repr(end)}
        return [(item["metric"], [(t, v) for t, v in self._points(params, item.get("values")) if t >= start])
                for item in self._get("/api/v1/query", params, "matrix")]

    def range(self, query: str, start: float, end: float, step: float) -> List[Tuple[Labels, List[Sample]]]:
        """A range query (/api/v1/query_range): values evaluated every ``step`` s."""
        params = {"query": query, "start": repr(start), "end": repr(end), "step": repr(step)}
        return [(item["metric"], self._points(params, item.get("values")))
                for item in self._get("/api/v1/query_range", params, "matrix")]
