"""A small client for the Prometheus HTTP API (works with any server that
speaks it: Prometheus, VictoriaMetrics, Thanos, Mimir).

Every failure becomes a ReportError with one line a person can act on.
"""
from typing import Dict, List, Tuple

import requests

Labels = Dict[str, str]
Sample = Tuple[float, float]


class ReportError(Exception):
    """A problem the user must fix; its message is one line naming the fix."""


def promql_string(text: str) -> str:
    """A PromQL double-quoted string literal holding ``text`` verbatim."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def duration(seconds: float) -> str:
    """A PromQL range duration covering at least ``seconds``."""
    return "{}s".format(max(1, int(seconds + 0.999)))


class Prometheus:
    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()

    def _get(self, path: str, params: Dict[str, str]) -> dict:
        where = self.url + path
        try:
            response = self.session.get(where, params=params, timeout=self.timeout)
        except requests.exceptions.Timeout:
            raise ReportError("Prometheus at {} did not answer within {:g} s; check --prometheus "
                              "or raise --timeout".format(self.url, self.timeout))
        except requests.exceptions.RequestException as exc:
            raise ReportError("Prometheus at {} is unreachable ({}); check --prometheus".format(
                self.url, type(exc).__name__))
        try:
            body = response.json()
        except ValueError:
            raise ReportError("{} answered HTTP {} without the Prometheus API's JSON; is --prometheus "
                              "the server's base URL?".format(where, response.status_code))
        if body.get("status") != "success":
            raise ReportError("Prometheus at {} refused the query {!r}: {}".format(
                self.url, params.get("query"), body.get("error", "HTTP {}".format(response.status_code))))
        return body["data"]

    def vector(self, query: str, at: float) -> List[Tuple[Labels, float]]:
        """An instant query: one value per series."""
        data = self._get("/api/v1/query", {"query": query, "time": repr(at)})
        if data["resultType"] != "vector":
            raise ReportError("expected a vector from {!r}, got {}".format(query, data["resultType"]))
        return [(item["metric"], float(item["value"][1])) for item in data["result"]]

    def raw(self, selector: str, start: float, end: float) -> List[Tuple[Labels, List[Sample]]]:
        """The raw scraped samples of ``selector`` with timestamps in [start, end]
        (a range-vector selector evaluated at ``end``)."""
        query = "{}[{}]".format(selector, duration(end - start))
        data = self._get("/api/v1/query", {"query": query, "time": repr(end)})
        return [(item["metric"], [(float(t), float(v)) for t, v in item["values"] if float(t) >= start])
                for item in data["result"]]

    def range(self, query: str, start: float, end: float, step: float) -> List[Tuple[Labels, List[Sample]]]:
        """A range query (/api/v1/query_range): values evaluated every ``step`` s."""
        data = self._get("/api/v1/query_range", {"query": query, "start": repr(start), "end": repr(end),
                                                 "step": repr(step)})
        return [(item["metric"], [(float(t), float(v)) for t, v in item["values"]])
                for item in data["result"]]
