"""Hypothesis settings for the whole suite. By default the property tests draw the same examples on every run
(``derandomize``), so a gate's verdict does not depend on the draw: CI once went red on a subnormal spread that
local runs had never drawn. Hunting for new failures is a deliberate act: ``HYPOTHESIS_PROFILE=hunt`` draws
fresh random examples each run (``--hypothesis-seed=N`` repeats one)."""
import os

from hypothesis import settings

settings.register_profile("gate", derandomize=True)
settings.register_profile("hunt", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "gate"))
