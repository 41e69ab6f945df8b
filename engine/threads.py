"""Short torch work on the calling thread alone.

torch runs each operation on its intra-op threads (2 on a 2-core machine). Passes over a few hundred thousand numbers
are too short to gain from a second thread, and on a machine where another program keeps a core busy each parallel
region waits for a descheduled thread: the chart's control change took 100-300 ms with 2 threads against 3-20 ms
with 1 (151 936 tokens), and a cumulative sum of 100 000 float64 values 5.7 ms at its 90th percentile against
0.054 ms (one core kept busy). torch's setting is per thread once a thread has used it; it is given back after.
"""

from contextlib import contextmanager

import torch


@contextmanager
def one_torch_thread():
    """Run torch on the calling thread alone for the ``with`` block; the thread's setting is restored after."""
    before = torch.get_num_threads()
    if before != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if before != 1:
            torch.set_num_threads(before)
