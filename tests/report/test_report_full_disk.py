"""edgescope-report's files on a real full disk (a filled tmpfs, root only): --output and --plots keep their
previous content whole, and the failure is one error line naming the file and the fix, exit 2."""
import os

from report.cli import main
from tests.fulldisk import disk  # noqa: F401  (the fixture)


def window(bench_prometheus) -> list:
    bench = bench_prometheus.bench
    return ["--prometheus", bench_prometheus.url, "--since", repr(bench.base), "--until", repr(bench.end)]


def error_line(capsys) -> str:
    out, err = capsys.readouterr()
    errors = [line for line in err.splitlines() if "error" in line or "Traceback" in line]
    assert out == "" and len(errors) == 1 and errors[0] == err.splitlines()[-1], err
    return errors[0]


def test_output_on_a_full_disk_keeps_the_old_report(bench_prometheus, disk, capsys):
    path = disk.path("report.json")
    with open(path, "w") as f:
        f.write('{"the": "previous report"}\n')
    disk.fill()
    assert main(window(bench_prometheus) + ["--format", "json", "--output", path]) == 2
    assert error_line(capsys) == ("edgescope-report: error: cannot write report {}: No space left on device (0.0 MB free there); "
                                  "free space or pick another --output".format(path))
    assert open(path).read() == '{"the": "previous report"}\n'
    assert sorted(os.listdir(disk.root)) == ["filler", "report.json"]


def test_plots_on_a_full_disk_keep_the_old_plots(bench_prometheus, disk, capsys):
    os.mkdir(disk.path("plots"))
    old = disk.path("plots", "time_split.png")
    with open(old, "wb") as f:
        f.write(b"the previous plot")
    disk.fill()
    assert main(window(bench_prometheus) + ["--format", "json", "--plots", disk.path("plots")]) == 2
    line = error_line(capsys)
    assert line.startswith("edgescope-report: error: cannot write plot {}".format(disk.path("plots", "")))
    assert line.endswith(": No space left on device (0.0 MB free there); free space or pick another --plots")
    assert open(old, "rb").read() == b"the previous plot"
    assert os.listdir(disk.path("plots")) == ["time_split.png"]
