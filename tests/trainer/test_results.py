"""The run's summary line: mean ± std over the kept epochs, and one kept epoch without a made-up spread."""
from trainer.results import print_summary


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
