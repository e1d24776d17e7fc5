#!/usr/bin/python3
"""asyncio_bench.py - the Python peer for S1: asyncio subprocesses, as a user
would write them (create_subprocess_exec + wait, a semaphore for the number in
flight, the interpreter's default child watcher). Children inherit our stdio.

    asyncio_bench.py spawn CHILD RUNS INFLIGHT
"""
import asyncio
import sys
import time


async def spawn(child, runs, inflight):
    sem = asyncio.Semaphore(inflight)

    async def one():
        async with sem:
            p = await asyncio.create_subprocess_exec(child)
            await p.wait()

    t0 = time.monotonic()
    await asyncio.gather(*(one() for _ in range(runs)))
    return time.monotonic() - t0


def main():
    if len(sys.argv) != 5 or sys.argv[1] != "spawn":
        sys.exit("usage: asyncio_bench.py spawn CHILD RUNS INFLIGHT")
    runs, inflight = int(sys.argv[3]), int(sys.argv[4])
    secs = asyncio.run(spawn(sys.argv[2], runs, inflight))
    print(f"ok runs={runs} secs={secs:.6f} per_sec={runs / secs:.1f}")


if __name__ == "__main__":
    main()
