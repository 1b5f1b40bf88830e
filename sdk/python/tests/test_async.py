"""The asyncio client: the same routes, awaited, and its async iterators."""

from __future__ import annotations

import asyncio
from typing import Any

import baton
from baton import AsyncClient

from .conftest import Server
from .test_client import DIAMOND, WAITING


def test_the_async_client(server: Server) -> None:
    async def main() -> None:
        async with AsyncClient(server.url) as client:
            assert await client.health() == {"status": "ok"} and await client.ready()
            wf = await client.create_workflow(DIAMOND)
            assert (await client.plan(wf["id"]))["stages"][1] == ["b", "c"]
            assert (await client.get_workflow(wf["id"]))["name"] == "diamond"
            await client.create_workflow(WAITING)
            names = [w["name"] async for w in client.iter_workflows(page_size=1)]
            assert names == ["waiting", "diamond"]

            # Two runs side by side: one followed by its stream, one awaited.
            first, second = await asyncio.gather(
                client.execute(wf["id"], {"n": 1}), client.execute(wf["id"], {"n": 2})
            )
            events = [e async for e in client.events(first["execution_id"])]
            assert events[-1].final and events[-1].payload["status"] == "completed"
            done = await client.wait(second["execution_id"], timeout=30)
            assert done["status"] == "completed"
            listed = [r["execution_id"] async for r in client.iter_executions(page_size=1)]
            assert sorted(listed) == sorted([first["execution_id"], second["execution_id"]])

            waiting = await client.create_workflow(WAITING)
            run = (await client.execute(waiting["id"]))["execution_id"]
            await client.pause(run)
            await client.resume(run)
            try:
                await client.wait(run, timeout=0.2)
                raise AssertionError("the run should still wait")
            except baton.WaitTimeout:
                pass
            await client.cancel(run)
            assert (await client.wait(run, timeout=30))["status"] == "cancelled"
            try:
                await client.get_execution("0" * 16)
                raise AssertionError("an unknown run should be 404")
            except baton.NotFound as missing:
                assert missing.code == "not-found"

            events_in: list[dict[str, Any]] = [
                {"type": "tick", "key": f"k{i % 5}", "payload": {"n": i}} for i in range(5000)
            ]
            offsets = await client.publish(events_in, topic="ticks", batch_size=700)
            assert len(offsets) == 5000
            seen = set()
            async for delivery in client.consume("ticks", "g", max=1000, wait_ms=200):
                seen.add(delivery.payload["n"])
                if len(seen) == 5000:
                    break
            polled = await client.poll("ticks", "h", max=3, wait_ms=200)
            assert await client.ack("ticks", "h", polled) == 3

    asyncio.run(main())
