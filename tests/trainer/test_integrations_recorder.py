"""The callbacks' StepGrouper: micro-batch timings summed into their optimizer steps, also when the timings
arrive after their steps have closed (lazy CUDA events resolve later, in order)."""
import pytest

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
    assert [tuple(round(v, 9) for v in s[:3]) for s in steps] == [(0.3, 3.0, 30.0), (0.3, 3.0, 30.0),
                                                                  (1.5, 15.0, 150.0)]
    assert all(s.read_s is None and s.fetch_stall_storage_s is None for s in steps)  # the loader timed nothing


def test_a_steps_stall_split_is_weighted_where_every_micro_batch_has_one():
    steps = []
    grouper = StepGrouper(steps.append)
    grouper.add(BatchTiming(0.3, 1.0, 1.3, storage_share=1.0))
    grouper.add(BatchTiming(0.1, 1.0, 1.1, 0.05, storage_share=0.0))
    grouper.add(BatchTiming(0.1, 1.0, 1.1, storage_share=0.5))
    grouper.add(BatchTiming(0.1, 1.0, 1.1))  # one micro-batch of the second step came without a split
    grouper.micro_batch_done(False)
    grouper.micro_batch_done(True)
    grouper.micro_batch_done(False)
    grouper.micro_batch_done(True)
    assert [round(v, 9) for v in steps[0][:4]] == [0.4, 2.0, 2.4, 0.05]
    assert steps[0].stall_split() == pytest.approx((0.3, 0.1))
    assert steps[1].stall_split() is None and steps[1].fetch_stall_preprocess_s is None


def test_timings_before_the_step_closes_wait_for_it():
    steps = []
    grouper = StepGrouper(steps.append)
    grouper.add(BatchTiming(0.5, 1.0, 1.5))  # a CPU clock delivers at once, before the step is known closed
    assert steps == []
    grouper.micro_batch_done(True)
    assert steps == [BatchTiming(0.5, 1.0, 1.5)]
