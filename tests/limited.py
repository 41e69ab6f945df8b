"""Run a snippet in a child process under an address-space limit (RLIMIT_AS), so that a memory bomb that slips
through kills only the child (MemoryError or a failed allocation), never the test runner."""

import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_limited(code: str, limit_gib: float = 4.0, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``code`` after ``import torch`` with the address space limited to ``limit_gib`` GiB more than torch's
    import takes; returns the finished process (stdout/stderr as text)."""
    prelude = textwrap.dedent(f"""
        import resource, sys
        sys.path.insert(0, {ROOT!r})
        import torch
        with open("/proc/self/statm") as f:
            used = int(f.read().split()[0]) * resource.getpagesize()
        limit = used + int({limit_gib} * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    """)
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env=env)
