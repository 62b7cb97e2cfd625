"""How many intra-op threads torch uses while sknc trains or runs a network, and putting the user's back."""

from __future__ import annotations

import os
from contextlib import contextmanager

#: Multiply-adds per batch (forward) below which training runs on one thread. A small batch's kernels are too
#: short to amortise waking other threads, and on a machine whose other cores are busy each wake-up waits for
#: a core. Measured on 2 cores (benchmarks/bench_training.py, --only threads): the demo's MLP (19 M per batch)
#: takes 0.7 s for 20 epochs on one thread and 0.6 s on two when the machine is idle, 0.8 s against 2.6 s
#: beside a busy process; the default CNN (0.9 G per batch of 28x84 strips) takes 7.4 s on one thread and
#: 3.4 s on two idle, 5.9 s against 9.0 s busy, so it keeps every core.
SMALL_BATCH_MACS = 50e6


def policy_threads(macs_per_batch, n_threads=None):
    """The intra-op threads for a network: ``n_threads`` when given (``'all'``: every core), else one thread
    for small batches and torch's own choice (None) for larger ones or when the work is unknown."""
    if n_threads is not None:
        return (os.cpu_count() or 1) if n_threads == "all" else int(n_threads)
    if macs_per_batch is None:
        return None
    return 1 if macs_per_batch < SMALL_BATCH_MACS else None


@contextmanager
def torch_threads(n):
    """Run the block with ``n`` intra-op threads (None: leave torch's setting), then restore the caller's."""
    import torch

    if n is None:
        yield
        return
    before = torch.get_num_threads()
    if n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
