"""The run's summary line: mean ± std over the kept epochs, and one kept epoch without a made-up spread."""
from trainer.results import print_epoch, print_summary


def record(epoch: int, duration: float, complete: bool = True) -> dict:
    return {"epoch": epoch, "complete": complete, "duration_s": duration, "fetch_stall_s": 0.5,
            "compute_s": duration - 1.0, "overhead_s": 0.5}


def test_one_kept_epoch_prints_its_values_with_n_1_and_no_spread(capsys):
    print_summary([record(0, 4.0)])
    assert capsys.readouterr().out == "epoch 0 alone (n=1, no spread): E2E 4.00 s, stall 0.500 s, compute 3.00 s\n"
    print_summary([record(0, 4.0)], verbose=True)  # every time
    assert capsys.readouterr().out == ("epoch 0 alone (n=1, no spread): E2E 4.00 s, stall 0.500 s, "
                                       "compute 3.00 s, overhead 0.500 s\n")


def test_epoch_0_is_left_out_even_when_one_epoch_remains(capsys):
    print_summary([record(0, 9.0), record(1, 4.0), record(2, 5.0, complete=False)])
    out = capsys.readouterr().out
    assert out.startswith("epoch 1 alone (n=1, no spread): E2E 4.00 s,") and "±" not in out


def test_several_epochs_print_mean_and_sample_std(capsys):
    print_summary([record(0, 9.0), record(1, 4.0), record(2, 6.0)])
    assert capsys.readouterr().out.startswith("mean ± std over epochs 1..2 (n=2): E2E 5.0 ± 1.4 s, ")


def reference_epoch() -> dict:
    """An epoch of the reference experiment on a Jetson Nano (VGG11, CIFAR-10, 3125 batches): half an hour."""
    return {"epoch": 5, "complete": True, "duration_s": 1865.392, "fetch_stall_s": 652.888,
            "fetch_stall_storage_s": 587.6, "fetch_stall_preprocess_s": 65.288, "compute_s": 1209.29,
            "host_overhead_s": 2.1, "loader_startup_s": 0.61, "loader_shutdown_s": 0.41, "overhead_s": 0.001,
            "read_s": 1403.2, "preprocess_s": 612.9, "energy_joules": 12554.3, "energy_bound_joules": 12.9,
            "average_power_watts": 6.7301, "batches": 3125, "samples": 50000, "loss": 1.23456}


def test_the_epoch_line_fits_120_columns_and_verbose_adds_every_time(capsys):
    print_epoch(reference_epoch(), 6)
    line = capsys.readouterr().out
    assert line == ("epoch 5/6: E2E 1865 s, stall 653 s (90% storage), compute 1209 s, energy 12554 ± 13 J, "
                    "power 6.73 W, loss 1.2346\n")
    assert len(line.rstrip("\n")) <= 120
    print_epoch(reference_epoch(), 6, verbose=True)
    verbose = capsys.readouterr().out
    assert verbose.startswith(line.rstrip("\n") + "; stall split: storage 588 s, preprocess 65.3 s; host overhead "
                              "2.10 s, loader start-up 0.610 s, shutdown 0.410 s")
    assert verbose.endswith("workers: read 1403 s, preprocess 613 s; 3125 batches, 50000 samples\n")


def test_the_summary_fits_120_columns_for_the_reference_run(capsys):
    history = [dict(reference_epoch(), epoch=e, duration_s=1865.392 + 3.1 * e) for e in range(6)]
    print_summary(history)
    line = capsys.readouterr().out.splitlines()[0]
    assert line == "mean ± std over epochs 1..5 (n=5): E2E 1875 ± 5 s, stall 652.9 ± 0 s, compute 1209 ± 0 s"
    assert len(line) <= 120
