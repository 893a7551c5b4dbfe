"""edgescope-report --format html, loaded in Debian's headless Chromium: the
page from a real Prometheus holds exactly the text report's tables and the
plots --plots writes, the browser draws the plots and prints the page, and
the page fetches nothing (every request goes to a recording proxy). Labels
holding markup stay text."""
import base64
import io
import json
import re
import sys

import matplotlib.image
import numpy

from report import html_page
from report.cli import main
from report.render import tables
from tests.report import synthetic
from tests.report.browser import Dom, RefusingProxy, chromium, loaded

URL_ATTRIBUTES = {"src", "href", "srcset", "action", "formaction", "poster", "data", "background", "xlink:href"}
OKABE_BLUE = (0, 114, 178)  # the compute bars of the time split
HOSTILE_ID = '<img src="http://leak.example/id.png">&amp; "run" \'1\''
HOSTILE_MODEL = "<b>bold</b><script>document.title='x'</script>"
HOSTILE_NOTE = "run <iframe src=http://leak.example/note></iframe> on nano-1: epoch 2 missing"


def cli(*args: str) -> str:
    out = io.StringIO()
    sys_stdout, sys.stdout = sys.stdout, out
    try:
        assert main(list(args)) == 0
    finally:
        sys.stdout = sys_stdout
    return out.getvalue()


def fetched_urls(markup: str):
    """Every URL-valued attribute and CSS url() of the page that is not a data: URI."""
    dom = Dom(markup)
    urls = [v for _, attrs in dom.elements for k, v in attrs.items() if k in URL_ATTRIBUTES and v is not None]
    urls += re.findall(r"url\(([^)]*)\)", markup) + re.findall(r"@import[^;]*", markup)
    return [u for u in urls if not u.startswith("data:")]


def test_a_page_from_prometheus_in_chromium(bench_prometheus, tmp_path):
    bench = bench_prometheus.bench
    window = ["--prometheus", bench_prometheus.url, "--since", repr(bench.base), "--until", repr(bench.end)]
    page = tmp_path / "report.html"
    assert cli(*window, "--format", "html", "--output", str(page), "--plots", str(tmp_path / "plots")) == ""
    report = json.loads(cli(*window, "--format", "json"))
    markup = page.read_text(encoding="utf-8")
    assert fetched_urls(markup) == [] and "<script" not in markup and "<link" not in markup
    assert "@media print" in markup
    proxy = RefusingProxy()
    try:
        dom = Dom(chromium(page, proxy, "--dump-dom"))
        chromium(page, proxy, "--screenshot=" + str(tmp_path / "shot.png"), "--window-size=1400,4000")
        chromium(page, proxy, "--print-to-pdf=" + str(tmp_path / "report.pdf"), "--no-pdf-header-footer")
    finally:
        proxy.close()
    assert proxy.page_hosts() == []

    # The browser's tables are the text report's table model, cell for cell.
    assert dom.tables == [[headers] + rows for _, headers, rows in tables(report)]
    assert len(dom.tables[0]) == 1 + sum(len(r["epochs"]) for r in bench.runs.values())
    assert len(dom.tags("caption")) == 4  # per epoch, per run, comparison, diagnosis and what-if
    # The plots, embedded: the very PNGs --plots writes, drawn by the browser.
    images = dom.tags("img")
    assert [i["alt"] for i in images] == ["time split", "energy per epoch", "power over run"]
    for image, name in zip(images, ("time_split", "energy_per_epoch", "power_over_run")):
        prefix = "data:image/png;base64,"
        assert image["src"].startswith(prefix)
        assert base64.b64decode(image["src"][len(prefix):]) == (tmp_path / "plots" / (name + ".png")).read_bytes()
    shot = (matplotlib.image.imread(str(tmp_path / "shot.png"))[:, :, :3] * 255).round()
    blue = numpy.all(numpy.abs(shot - numpy.array(OKABE_BLUE)) <= 2, axis=2).sum()
    assert blue > 2000, "the time split's bars are not on the screenshot ({} blue pixels)".format(blue)
    pdf = (tmp_path / "report.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and len(re.findall(rb"/Type\s*/Page[^s]", pdf)) >= 2


def hostile_report() -> dict:
    runs = [synthetic.run(0, run_id=HOSTILE_ID, info={"model": HOSTILE_MODEL, "workers": "<i>4</i>"}),
            synthetic.run(1)]
    return synthetic.report(runs, notes=[HOSTILE_NOTE])


def test_labels_holding_markup_stay_text(tmp_path):
    page = tmp_path / "hostile.html"
    page.write_text(html_page.as_html(hostile_report()), encoding="utf-8")
    dom, hosts = loaded(page)
    assert hosts == []
    assert [tag for tag, _ in dom.elements if tag in ("img", "b", "i", "script", "iframe")] == []
    assert [row[0] for row in dom.tables[0][1:5]] == [HOSTILE_ID] * 4
    assert [row[2] for row in dom.tables[1][1:]] == [HOSTILE_MODEL, "vgg11"]
    assert "workers=<i>4</i>" in [cell for row in dom.tables[2] for cell in row]
    assert dom.items == [HOSTILE_NOTE]
    assert fetched_urls(page.read_text(encoding="utf-8")) == []


def test_the_checks_see_markup_and_fetches_when_nothing_is_escaped(tmp_path, monkeypatch):
    """The same hostile report unescaped and without the page's policy: the
    DOM and the proxy then show the injected elements and their fetch, so the
    test above would fail if escaping broke."""
    monkeypatch.setattr(html_page, "_e", str)
    monkeypatch.setattr(html_page, "CSP", "default-src *")
    page = tmp_path / "unescaped.html"
    page.write_text(html_page.as_html(hostile_report()), encoding="utf-8")
    dom, hosts = loaded(page)
    assert {"img", "b", "iframe"} <= {tag for tag, _ in dom.elements}
    assert "leak.example" in hosts
    assert fetched_urls(page.read_text(encoding="utf-8"))
