"""How many intra-op threads torch uses while sknc trains or runs a network, and putting the user's back."""

from __future__ import annotations

import os
from contextlib import contextmanager

#: Multiply-adds per batch (forward) below which one thread trains fastest: a batch's kernels are then too
#: short to amortise waking other threads, and on a machine whose other cores are busy each wake-up waits
#: for a core (benchmarks/bench_training.py: the demo's MLP, 1.2 M multiply-adds per batch, trains 1.5-27x
#: faster on one thread; the CPU CNN, 0.3 G per batch of 28x28 images, gains from a second idle core).
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
