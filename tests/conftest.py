"""Test-suite settings."""

import pytest
import torch

# The suite evaluates small batches; one intra-op thread avoids OpenMP oversubscription
# (two threads per process collapse when another process is busy on a 2-core machine).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def one_thread():
    """Every test starts on one thread, whatever an earlier test set."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
