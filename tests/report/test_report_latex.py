"""edgescope-report --format latex: the text report's tables as booktabs
longtables, compiled by pdflatex (Debian's texlive-latex-base and
-recommended) from a real Prometheus and with every LaTeX special in the
labels; the escaping itself checked character by character."""
import io
import json
import re
import shutil
import subprocess
import sys

import pytest

from report.cli import main
from report.latex import as_latex, escape
from report.render import tables
from tests.report import synthetic

PDFLATEX = shutil.which("pdflatex")
SPECIALS = "_%&#${}~^\\"
HOSTILE_ID = r"run_1 50% & #2 $x$ {a} ~b ^c \d <e>|f"


def pdflatex(source: str, directory) -> bytes:
    """The PDF pdflatex makes of source; fails with the log's error lines if it stops."""
    assert PDFLATEX, "no pdflatex: run scripts/install-deps.sh (texlive-latex-base, texlive-latex-recommended)"
    (directory / "report.tex").write_text(source, encoding="utf-8")
    done = subprocess.run([PDFLATEX, "-interaction=nonstopmode", "-halt-on-error", "report.tex"], cwd=str(directory),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    log = done.stdout.decode("utf-8", errors="replace")
    assert done.returncode == 0, "\n".join(line for line in log.splitlines() if line.startswith("!") or "l." in line)
    return (directory / "report.pdf").read_bytes()


def body_rows(source: str):
    """Per longtable: its column spec and the cells of each row between \\endhead and \\bottomrule."""
    found = []
    for spec, body in re.findall(r"\\begin\{longtable\}\{([lr]+)\}(.*?)\\end\{longtable\}", source, re.S):
        assert body.count(r"\toprule") == 2 and body.count(r"\midrule") == 2 and body.count(r"\bottomrule") == 1
        rows = body.split(r"\endhead", 1)[1].split(r"\bottomrule", 1)[0].strip().splitlines()
        found.append((spec, [re.split(r"(?<!\\)&", row[:-len(r" \\")]) for row in rows]))
    return found


@pytest.mark.parametrize("char", list(SPECIALS))
def test_every_special_is_escaped_once(char):
    text = escape("a{}b".format(char))
    assert text.startswith("a") and text.endswith("b")
    inner = text[1:-1]
    assert inner in (r"\{}".format(char), r"\textbackslash{}", r"\textasciitilde{}", r"\textasciicircum{}")
    assert escape(r"\textbackslash{}") == r"\textbackslash{}textbackslash\{\}"  # one pass: never re-escaped


def test_the_report_from_prometheus_compiles(bench_prometheus, tmp_path):
    bench = bench_prometheus.bench
    window = ["--prometheus", bench_prometheus.url, "--since", repr(bench.base), "--until", repr(bench.end)]
    out = tmp_path / "report.tex"
    sys_stdout, sys.stdout = sys.stdout, io.StringIO()
    try:
        assert main(window + ["--format", "latex", "--output", str(out)]) == 0
        assert main(window + ["--format", "json"]) == 0
        report = json.loads(sys.stdout.getvalue())
    finally:
        sys.stdout = sys_stdout
    source = out.read_text(encoding="utf-8")
    found = body_rows(source)
    model = tables(report)
    assert len(found) == len(model) == 4  # per epoch, per run, comparison, diagnosis and what-if
    for (spec, rows), (title, headers, cells) in zip(found, model):
        assert len(spec) == len(headers) and len(rows) == len(cells)
        assert all(len(row) == len(headers) for row in rows)
        assert spec[0] == "l" and spec[-1] in "rl"
        assert "r" in spec or title.startswith("Diagnosis")  # numbers right-aligned; the diagnosis is words
    assert r"\label{tab:edgescope-per-epoch}" in source and r"\label{tab:edgescope-comparison}" in source
    assert r"$\pm$" in source and "±" not in source
    assert pdflatex(source, tmp_path).startswith(b"%PDF")


def test_labels_with_latex_specials_compile_and_print_as_themselves(tmp_path):
    runs = [synthetic.run(0, run_id=HOSTILE_ID, info={"model": "res_net#1"}), synthetic.run(1)]
    source = as_latex(synthetic.report(runs, notes=["run {} on nano-1: 100% & more".format(HOSTILE_ID)]))
    escaped = (r"run\_1 50\% \& \#2 \$x\$ \{a\} \textasciitilde{}b \textasciicircum{}c \textbackslash{}d "
               r"\textless{}e\textgreater{}\textbar{}f")
    assert source.count(escaped) == 4 + 1 + 1 + 1  # 4 epochs, its run row, its diagnosis row, the note
    assert r"res\_net\#1" in source
    assert pdflatex(source, tmp_path).startswith(b"%PDF")


def test_an_unwritable_output_is_one_line(bench_prometheus, tmp_path, capsys):
    bench = bench_prometheus.bench
    target = tmp_path / "no such directory" / "tables.tex"
    code = main(["--prometheus", bench_prometheus.url, "--since", repr(bench.base), "--until", repr(bench.end),
                 "--format", "latex", "--output", str(target)])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and not target.exists()
    last = err.splitlines()[-1]
    assert last == "edgescope-report: error: cannot write report {}: No such file or directory; pick another " \
                   "--output".format(target)
