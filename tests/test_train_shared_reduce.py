"""The shared-memory gradient all-reduce of CPU ranks on one machine: gloo's result bit for bit, in chunks, set up
on every rank or on none, and leaving no file behind."""

import glob
import multiprocessing
import os
import platform
import queue

import pytest
import torch
import torch.distributed as dist

from engine.train import shared_reduce
from engine.train.distributed import _free_port


def _rank(rank: int, world_size: int, port: int, opt_out: bool, out, die: bool = False) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo")
    if opt_out:
        os.environ[shared_reduce.OPT_OUT] = "1"
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        reducer = shared_reduce.shared_reducer(rank, world_size)
        result = {"made": reducer is not None}
        if die and reducer is not None:  # rank 1 ends before the exchange; rank 0 must not wait for it forever
            if rank:
                os._exit(0)
            try:
                reducer.average_([torch.ones(10)])
            except RuntimeError as e:
                result["error"] = str(e)
            out.put((rank, result))
            return
        if reducer is not None:
            reducer.chunk_bytes = 4 * 1000  # 1000 float32 values a round: the tensors below take several
            g = torch.Generator().manual_seed(rank)
            shapes = [(2500,), (3, 7), (1,), (999,), (40, 30)]
            cases = {"fp32": [torch.float32], "fp64": [torch.float64], "bf16": [torch.bfloat16],
                     "fp32 and fp64": [torch.float32, torch.float64],
                     "gloo's barrier": [torch.float32]}  # the barrier used where the counters' is not (not x86-64)
            for name, dtypes in cases.items():
                reducer.spin_barrier &= name != "gloo's barrier"
                mine = [(torch.randn(shape, generator=g) * 10 ** (rank - 1)).to(dtypes[i % len(dtypes)])
                        for i, shape in enumerate(shapes)]
                want = [t / world_size for t in mine]
                for t in want:
                    dist.all_reduce(t)  # what DDP's own hook does: divide, then gloo's sum
                got = [t.clone() for t in mine]
                reducer.average_(got)
                result[name] = max(0.0 if torch.equal(a, b) else (a - b).abs().max().item() for a, b in zip(got, want))
        out.put((rank, result))
    finally:
        dist.destroy_process_group()


def _run(world_size: int, opt_out: bool = False, die: bool = False) -> dict:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_rank, args=(r, world_size, port, opt_out, out, die)) for r in range(world_size)]
    for p in procs:
        p.start()
    results = {}
    try:
        while len(results) < world_size - die:
            try:
                rank, result = out.get(timeout=1)
                results[rank] = result
            except queue.Empty:
                assert not any(p.exitcode for p in procs), [p.exitcode for p in procs]
    finally:
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    return results


@pytest.mark.slow
def test_ranks_average_through_shared_memory_as_gloo_does():
    before = set(glob.glob(os.path.join(shared_reduce._folder(), "llm-playground-grads-*")))
    results = _run(2)
    assert sorted(results) == [0, 1]
    for rank, result in results.items():
        assert result["made"], rank
        assert len(result) == 6 and all(v == 0.0 for k, v in result.items() if k != "made"), (rank, result)
    # the file is removed once every rank has mapped it
    assert set(glob.glob(os.path.join(shared_reduce._folder(), "llm-playground-grads-*"))) == before


@pytest.mark.slow
def test_three_ranks_and_the_opt_out():
    results = _run(3)
    assert all(r["made"] for r in results.values())
    for result in results.values():  # three ranks: the sum is in rank order here, in gloo's own order there
        assert result["fp64"] < 1e-12 and result["fp32"] < 1e-5, result
    assert not any(r["made"] for r in _run(2, opt_out=True).values())


@pytest.mark.slow
@pytest.mark.skipif(os.name != "posix" or platform.machine().lower() not in ("x86_64", "amd64"),
                    reason="the spinning barrier is x86-64's; elsewhere gloo's, which fails as a peer's socket closes")
def test_a_rank_that_ended_fails_the_exchange_instead_of_a_wait():
    results = _run(2, die=True)
    assert "rank 1" in results[0]["error"] and "ended" in results[0]["error"]
