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


def test_dataset_samples_are_those_a_full_epoch_of_the_loader_covers():
    """A callback's full epoch is never taken for part of one (report.configuration.part_of_an_epoch): 20 samples
    in batches of 8 with drop_last cover 16 a full epoch, a sampler that picks 10 of them covers 10; an iterable
    dataset has no count."""
    import torch
    from torch.utils.data import DataLoader, IterableDataset, SubsetRandomSampler, TensorDataset

    from report.configuration import part_of_an_epoch
    from trainer.integrations.recorder import samples_of

    class Stream(IterableDataset):
        def __iter__(self):  # type: ignore
            return iter(range(3))

    data = TensorDataset(torch.zeros(20, 1))
    assert samples_of(DataLoader(data, batch_size=8)) == "20"
    assert samples_of(DataLoader(data, batch_size=8, drop_last=True)) == "16"
    assert samples_of(DataLoader(data, batch_size=8, sampler=SubsetRandomSampler(range(10)))) == "10"
    assert samples_of(DataLoader(Stream(), batch_size=2)) == "none" and samples_of(None) == "none"
    assert part_of_an_epoch({"dataset_samples": samples_of(DataLoader(data, batch_size=8, drop_last=True)),
                             "epoch_samples": "16"}) is None


def test_a_callbacks_user_can_say_the_image_size_and_two_sizes_are_two_workloads():
    """The callbacks cannot read a loop's transforms: without image_size, 64 px and 224 px runs of one dataset
    were one configuration (pooled as repeats, one front); the user's labels may now say it."""
    from report.configuration import key, workload
    from trainer.integrations.recorder import checked_labels

    small, large = ({"model": "Net", "dataset": "ImageFolder", "dataset_samples": "1000", "framework": "lightning",
                     **checked_labels({"image_size": size})} for size in ("64", "224"))
    assert workload(small) != workload(large) and key(small) != key(large)
    with pytest.raises(ValueError, match="'max_batches' is not usable"):
        checked_labels({"max_batches": "4"})
