"""A resume's settings check: what a checkpoint saved is compared, what it saved only later is not missed."""
import pytest

from trainer.checkpoint import check_settings
from trainer.errors import UsageError

NOW = {"model": "vgg11", "dataset": "cifar10", "dataset_samples": "50000", "dataset_id": "3f2a9c1b7e4d",
       "workers": "4"}


def test_a_checkpoint_from_before_dataset_samples_or_dataset_id_was_saved_resumes():
    check_settings({k: v for k, v in NOW.items() if k != "dataset_samples"}, NOW, "ckpt")
    check_settings({k: v for k, v in NOW.items() if k not in ("dataset_samples", "dataset_id")}, NOW, "ckpt")


def test_another_dataset_size_or_setting_is_refused_naming_it():
    for key, value in (("dataset_samples", "1000"), ("dataset_id", "0c5d8e2f9a11"), ("workers", "2")):
        with pytest.raises(UsageError, match="{}={}".format(key, value)):
            check_settings(dict(NOW, **{key: value}), NOW, "ckpt")
    with pytest.raises(UsageError, match="workers=.unset."):
        check_settings({k: v for k, v in NOW.items() if k != "workers"}, NOW, "ckpt")
