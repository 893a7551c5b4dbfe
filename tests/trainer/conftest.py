"""Shared fixtures: a small synthetic CIFAR-10 and a way to launch the real CLIs."""
import os
import subprocess
import sys
from typing import List

import pytest
import torch

from trainer.synthetic import write_cifar10

# One intra-op thread, here and in every launched CLI: on a shared 2-core machine
# spinning OpenMP threads of tiny ops slow a run down tenfold when another job runs.
torch.set_num_threads(1)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="session")
def cifar_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = str(tmp_path_factory.mktemp("cifar"))
    write_cifar10(root, train_images=160, test_images=20, seed=1)
    return root


def cli_env() -> dict:
    return dict(os.environ, PYTHONPATH=REPO, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")


@pytest.fixture
def launch():
    """Starts ``python -m trainer.cli ARGS``; every process is killed at teardown."""
    processes = []  # type: List[subprocess.Popen]

    def start(args: List[str]) -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, "-m", "trainer.cli"] + args, cwd=REPO, env=cli_env(),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   start_new_session=True)  # its own process group, as a shell job would be
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.communicate()


def small_run_args(data_dir: str, tmp: str) -> List[str]:
    """A quick real run: mobilenet_v3_small, batch 8, no workers, 2 epochs of 4 batches."""
    return ["--data-dir", data_dir, "--model", "mobilenet_v3_small", "--batch-size", "8", "--workers", "0",
            "--epochs", "2", "--max-batches", "4", "--metrics-port", "-1", "--linger", "0",
            "--results", os.path.join(tmp, "results.jsonl"), "--metrics-textfile", os.path.join(tmp, "run.prom")]
