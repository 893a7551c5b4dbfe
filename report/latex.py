"""The report as LaTeX: the text report's tables (render.tables) as booktabs
longtables (they break across pages however many epochs), a paper can
\\input the document's tables or compile it as is with pdflatex.

Every cell is escaped: LaTeX's specials from run ids and labels print as
themselves; the report's own ±, ×, ≥ become math."""
import re
from typing import Dict, List

from report.render import numeric_columns, settings_text, tables

PREAMBLE = r"""% edgescope-report --format latex. Needs booktabs and longtable; compiles as is with pdflatex.
\documentclass{article}
\usepackage[a4paper,landscape,margin=15mm]{geometry}
\usepackage{booktabs}
\usepackage{longtable}
\begin{document}
\footnotesize
\setlength{\tabcolsep}{4pt}
"""
SPECIALS = {
    "\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#",
    "$": r"\$", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}",
    "|": r"\textbar{}", "\n": " ", "\r": " ", "\t": " ",
    "±": r"$\pm$", "×": r"$\times$", "≥": r"$\geq$", "−": r"$-$", "…": r"\ldots{}",
}  # type: Dict[str, str]
SPECIAL = re.compile("|".join(re.escape(c) for c in SPECIALS))


def escape(text: object) -> str:
    """Text as LaTeX prints it literally, in one pass (so nothing is escaped twice)."""
    return SPECIAL.sub(lambda match: SPECIALS[match.group()], str(text))


def _label(title: str) -> str:
    """tab:edgescope-per-epoch from "Per epoch (...)": what a paper \\ref's."""
    name = re.split(r"[:(]", title, 1)[0].strip().lower()
    return "tab:edgescope-" + (re.sub(r"[^a-z0-9]+", "-", name).strip("-") or "table")


def _row(cells: List[str]) -> str:
    return " & ".join(escape(c) for c in cells) + r" \\"


def _table(title: str, headers: List[str], rows: List[List[str]]) -> str:
    spec = "".join("r" if n else "l" for n in numeric_columns(headers, rows))
    head = [r"\toprule", _row(headers), r"\midrule"]
    lines = [r"\begin{longtable}{" + spec + "}",
             r"\caption{" + escape(title) + r"}\label{" + _label(title) + r"}\\"] + head + [r"\endfirsthead"]
    lines += head + [r"\endhead"] + [_row(r) for r in rows] + [r"\bottomrule", r"\end{longtable}"]
    return "\n".join(lines)


def as_latex(report: dict) -> str:
    parts = [PREAMBLE.rstrip("\n"), r"\noindent " + "; ".join(
        "{}: {}".format(escape(k), escape(v)) for k, v in settings_text(report)) + ".", ""]
    parts += [_table(*table) + "\n" for table in tables(report)]
    if report["notes"]:
        parts += [r"\paragraph{Notes}", r"\begin{itemize}"]
        parts += [r"\item " + escape(n) for n in report["notes"]]
        parts += [r"\end{itemize}"]
    parts.append(r"\end{document}")
    return "\n".join(parts) + "\n"
