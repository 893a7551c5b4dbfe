"""The callbacks' StepGrouper: micro-batch timings summed into their optimizer steps, also when the timings
arrive after their steps have closed (lazy CUDA events resolve later, in order)."""
from trainer.integrations.recorder import StepGrouper
from trainer.meter import BatchTiming


def test_late_timings_are_summed_into_their_steps_in_order():
    steps = []
    grouper = StepGrouper(steps.append)
    for closes in (False, True, True, False, False, True):  # steps of 2, 1 and 3 micro-batches
        grouper.micro_batch_done(closes)
    assert steps == []  # nothing timed yet: the events are still in flight
    for k in range(1, 7):
        grouper.add(BatchTiming(0.1 * k, 1.0 * k, 10.0 * k))
        if k == 1:
            assert steps == []  # the first step still waits for its second micro-batch
    assert [tuple(round(v, 9) for v in s) for s in steps] == [(0.3, 3.0, 30.0), (0.3, 3.0, 30.0), (1.5, 15.0, 150.0)]


def test_timings_before_the_step_closes_wait_for_it():
    steps = []
    grouper = StepGrouper(steps.append)
    grouper.add(BatchTiming(0.5, 1.0, 1.5))  # a CPU clock delivers at once, before the step is known closed
    assert steps == []
    grouper.micro_batch_done(True)
    assert steps == [BatchTiming(0.5, 1.0, 1.5)]
