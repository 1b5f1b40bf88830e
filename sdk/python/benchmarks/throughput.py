"""How fast the SDK drives a local server: worker tasks completed per second
by one Python process, and events published per second in batches.

    python sdk/python/benchmarks/throughput.py --server http://127.0.0.1:8080

Each figure is the median of `--repeat` runs; the machine's load is printed
beside them, since the server shares its cores with this process.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from typing import Any

from baton import AsyncClient, Client, Task, Worker


def tasks_per_second(url: str, tasks: int, concurrency: int) -> float:
    """A workflow of `tasks` independent calls of a worker agent, served by
    one `Worker` whose handler returns at once: from `execute` to the run's
    end."""
    worker = Worker(url, wait_ms=1000)

    @worker.agent("noop", concurrency=concurrency)
    async def noop(task: Task) -> Any:
        return None

    flow = {
        "name": "sdk_tasks",
        "agents": {"noop": {"type": "worker", "concurrency": concurrency}},
        "tasks": [{"id": f"t{i}", "agent": "noop"} for i in range(tasks)],
    }
    thread = worker.start()
    try:
        with Client(url) as client:
            wf = client.create_workflow(flow)
            began = time.perf_counter()
            run = client.execute(wf["id"])["execution_id"]
            status = client.wait(run, timeout=600, interval=0.01)
            took = time.perf_counter() - began
            assert status["status"] == "completed", status
    finally:
        worker.stop()
        thread.join()
    return tasks / took


def events_per_second(url: str, events: int, batch: int, concurrency: int) -> float:
    """`events` events of a ~100-byte payload, published in batches of
    `batch`, `concurrency` batches in flight."""
    payload = {"text": "x" * 80, "n": 0}
    items = [{"type": "bench", "key": f"k{i % 64}", "payload": payload} for i in range(events)]

    async def main() -> float:
        async with AsyncClient(url) as client:
            began = time.perf_counter()
            offsets = await client.publish(
                items, topic="sdk.bench", batch_size=batch, concurrency=concurrency
            )
            took = time.perf_counter() - began
            assert len(offsets) == events
            return events / took

    return asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="http://127.0.0.1:8080")
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--in-flight", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    rates = [
        tasks_per_second(args.server, args.tasks, args.concurrency) for _ in range(args.repeat)
    ]
    print(
        f"worker: {statistics.median(rates):,.0f} tasks/s "
        f"(median of {args.repeat}: {', '.join(f'{r:,.0f}' for r in rates)}; "
        f"{args.tasks} tasks, concurrency {args.concurrency})"
    )
    rates = [
        events_per_second(args.server, args.events, args.batch, args.in_flight)
        for _ in range(args.repeat)
    ]
    print(
        f"publish: {statistics.median(rates):,.0f} events/s "
        f"(median of {args.repeat}: {', '.join(f'{r:,.0f}' for r in rates)}; "
        f"{args.events} events in batches of {args.batch}, {args.in_flight} in flight)"
    )
    print(f"load average: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
