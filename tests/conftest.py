"""Test-suite settings."""

import torch

# The suite evaluates small batches; one intra-op thread avoids OpenMP oversubscription
# (two threads per process collapse when another process is busy on a 2-core machine).
torch.set_num_threads(1)
