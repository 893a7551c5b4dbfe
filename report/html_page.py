"""The report as one self-contained HTML page: the same tables and notes as
the text report (render.tables), the plots embedded as data: URIs, no script
and nothing fetched (a Content-Security-Policy forbids it), printable.

Everything that comes from Prometheus (run ids, labels, notes) is escaped:
a label holding markup shows as text."""
import html
from typing import List, Sequence, Tuple

from report.render import numeric_columns, settings_text, tables

# Lets the page load only its own inline style and data: images, whatever it holds.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
STYLE = """
body { font: 14px/1.45 "DejaVu Sans", "Helvetica Neue", Arial, sans-serif; margin: 1.5rem; color: #111;
       background: #fff; }
h1 { font-size: 1.5rem; margin: 0 0 .3rem; }
h2 { font-size: 1.15rem; margin: 1.6rem 0 .5rem; }
dl.settings { display: grid; grid-template-columns: max-content auto; gap: .1rem 1rem; margin: 0; color: #333; }
dl.settings dt { font-weight: 600; }
dl.settings dd { margin: 0; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: .3rem 0 1.2rem; font-variant-numeric: tabular-nums; }
caption { caption-side: top; text-align: left; font-weight: 600; padding: .2rem 0 .4rem; max-width: 70rem; }
th, td { padding: .2rem .6rem; border-bottom: 1px solid #ddd; white-space: nowrap; text-align: left; }
thead th { border-bottom: 2px solid #333; background: #fff; }
.num { text-align: right; }
tbody tr:nth-child(even) { background: #f5f5f5; }
ul.notes li { margin: .2rem 0; }
figure { margin: 0 0 1.5rem; }
figure img { width: 60rem; max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: .85rem; }
@page { size: A4 landscape; margin: 12mm; }
@media print {
  body { margin: 0; font-size: 7.5pt; }
  h2 { break-after: avoid; }
  .scroll { overflow: visible; }
  th, td { white-space: normal; padding: .1rem .25rem; }
  td.num { white-space: nowrap; }
  thead { display: table-header-group; }
  tr, figure, caption { break-inside: avoid; }
  tbody tr:nth-child(even) { background: none; }
  figure img { width: auto; max-width: 100%; max-height: 170mm; border: none; }
}
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _table(title: str, headers: List[str], rows: List[List[str]]) -> str:
    numeric = numeric_columns(headers, rows)

    def cells(tag: str, values: Sequence[str]) -> str:
        return "".join('<{0}{1}>{2}</{0}>'.format(tag, ' class="num"' if n else "", _e(v))
                       for v, n in zip(values, numeric))

    body = "\n".join("<tr>{}</tr>".format(cells("td", r)) for r in rows)
    return ('<div class="scroll"><table>\n<caption>{}</caption>\n<thead><tr>{}</tr></thead>\n'
            '<tbody>\n{}\n</tbody>\n</table></div>').format(_e(title), cells("th", headers), body)


def as_html(report: dict, plots: Sequence[Tuple[str, str]] = ()) -> str:
    """The page; plots are (name, data: URI) pairs as plots.data_uris gives them."""
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             '<meta http-equiv="Content-Security-Policy" content="{}">'.format(CSP),
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             "<title>edgescope report</title>", "<style>{}</style>".format(STYLE), "</head>", "<body>",
             "<header><h1>edgescope report</h1>",
             '<dl class="settings">{}</dl></header>'.format("".join(
                 "<dt>{}</dt><dd>{}</dd>".format(_e(k), _e(v)) for k, v in settings_text(report))),
             "<main>", "<h2>Tables</h2>"]
    parts += [_table(title, headers, rows) for title, headers, rows in tables(report)]
    parts.append("<h2>Notes</h2>")
    if report["notes"]:
        parts.append('<ul class="notes">{}</ul>'.format("".join("<li>{}</li>".format(_e(n))
                                                               for n in report["notes"])))
    else:
        parts.append("<p>No notes.</p>")
    if plots:
        parts.append("<h2>Plots</h2>")
        parts += ['<figure><img src="{}" alt="{}"><figcaption>{}.png</figcaption></figure>'.format(
            _e(uri), _e(name.replace("_", " ")), _e(name)) for name, uri in plots]
    parts += ["</main>", "</body>", "</html>"]
    return "\n".join(parts) + "\n"
