"""Test-wide settings: one torch thread per process.

Tiny models pay more for thread synchronisation than they gain from a second thread: on a busy 2-core machine
the suite took 936 s with two threads and 133 s with one (CONTRIBUTING.md). The variables are set before any
test module imports torch, and subprocesses started by tests inherit them.
"""

import os

for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")


def pytest_configure(config):
    """Pin torch's intra-op threads as well, in case torch was imported before the variables were read."""
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
