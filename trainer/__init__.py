"""edgescope trainer: DNN training instrumented for fetch stall, compute and batch time."""
