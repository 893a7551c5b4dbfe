"""Hypothesis settings for the whole suite. By default the property tests draw the same examples on every run
(``derandomize``), so a gate's verdict does not depend on the draw: CI once went red on a subnormal spread that
local runs had never drawn. Hunting for new failures is a deliberate act: ``HYPOTHESIS_PROFILE=hunt`` draws
fresh random examples each run (``--hypothesis-seed=N`` repeats one). And the what-ifs' calibration table every
test reads."""
import os

from hypothesis import settings

settings.register_profile("gate", derandomize=True)
settings.register_profile("hunt", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "gate"))


# What-if bars (trainer/calibration.py) read the suite's own table, not the one bench/whatif_accuracy.py
# regenerates: hand-computed bars stay put when the bench measures again. Set for the whole session, so that
# module-scoped fixtures and every subprocess read it too.
os.environ["EDGESCOPE_WHATIF_CALIBRATION"] = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                          "whatif_calibration.json")
