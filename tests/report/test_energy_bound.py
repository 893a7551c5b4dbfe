"""The trainer's energy bound per epoch and in the means: in the JSON, and the energy in the tables shown with
the digits the bound allows."""
from report.render import tables
from tests.report.synthetic import report, run


def test_epochs_and_means_carry_the_bound_and_energy_shows_the_digits_it_allows():
    measured = run(0, epochs=3)
    for epoch, bound in zip(measured.epochs, (0.9, 1.8, 2.7)):
        epoch.energy_joules, epoch.energy_bound_joules, epoch.energy_source = 150.123456 + epoch.epoch, bound, "trainer"
    result = report([measured], warmup_epochs=0)
    assert [e["energy_bound_joules"] for e in result["epochs"]] == [0.9, 1.8, 2.7]
    assert result["summary"][0]["energy_bound_joules"]["mean"] == 1.8  # the mean's bound: the mean of the bounds
    assert result["comparison"][0]["energy_bound_joules"]["mean"] == 1.8
    (_, heads, epochs), (_, summary_heads, summary) = tables(result)[:2]
    energy, bound = heads.index("energy J"), heads.index("± energy J")
    assert [(row[energy], row[bound]) for row in epochs] == [("150.1", "0.9"), ("151.1", "1.8"), ("152", "3")]
    # mean 151.12 ± std 1.0 over the epochs, mean bound 1.8: one decimal (std and bound both 1.x)
    assert summary[0][summary_heads.index("energy J")] == "151.1 ± 1.0"
    assert summary[0][summary_heads.index("± energy J")] == "1.8 ± 0.9"


def test_without_a_bound_energy_keeps_its_one_decimal():
    result = report([run(0, epochs=2)], warmup_epochs=0)
    assert result["epochs"][0]["energy_bound_joules"] is None
    (_, heads, epochs) = tables(result)[0]
    assert epochs[0][heads.index("energy J")] == "{:.1f}".format(result["epochs"][0]["energy_joules"])
