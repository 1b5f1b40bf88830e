"""How the console copes with a big run, measured in a real browser: the time
from opening a finished run of `--tasks` tasks to its page showing every
task's final count, and, while a run of that size executes, the longest gap
between two animation frames (how long the page was frozen).

    python sdk/python/benchmarks/console_scale.py --server http://127.0.0.1:8080 --tasks 100000

Needs Playwright and Debian's chromium (`apt-get install chromium`).
"""

from __future__ import annotations

import argparse
import shutil
import time
from typing import Any

from playwright.sync_api import sync_playwright

from baton import Client


def workflow(tasks: int) -> dict[str, Any]:
    """`tasks` tasks of 100 ms, 250 at a time (about 10,000 transitions a
    second), in layers of 1,000, each depending on one task of the layer
    before: wide stages, many transitions a second."""
    return {
        "name": f"console_scale_{tasks}",
        "agents": {"sim": {"type": "simulate", "latency": "100ms", "concurrency": 250}},
        "tasks": [
            {"id": f"t{i}", "agent": "sim", "depends_on": [f"t{i - 1000}"] if i >= 1000 else []}
            for i in range(tasks)
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="http://127.0.0.1:8080")
    parser.add_argument("--tasks", type=int, default=100_000)
    args = parser.parse_args()
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    with Client(args.server, timeout=300) as client, sync_playwright() as p:
        wf = client.create_workflow(workflow(args.tasks))
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        # bypass_csp: the measuring script runs in the page; the console itself does not need it.
        page = browser.new_context(
            bypass_csp=True, viewport={"width": 1280, "height": 900}
        ).new_page()

        # Live: a run of this size executing while its page is open.
        run = client.execute(wf["id"])["execution_id"]
        page.goto(f"{args.server}/ui/#/runs/{run}")
        page.wait_for_selector("h1 .badge")
        page.evaluate(
            """() => { window.__gaps = []; let last = performance.now();
            const tick = (t) => { window.__gaps.push(t - last); last = t;
              requestAnimationFrame(tick); }; requestAnimationFrame(tick); }"""
        )
        page.wait_for_selector("h1 .badge.s-completed", timeout=300_000)
        gaps = sorted(page.evaluate("() => window.__gaps"))
        status = client.get_execution(run)
        runtime = status["performance_metrics"]["total_runtime"]

        # Opening the finished run.
        page.goto(f"{args.server}/ui/#/runs")
        page.wait_for_selector("h1")
        began = time.perf_counter()
        page.goto(f"{args.server}/ui/#/runs/{run}")
        page.wait_for_selector(f"text={args.tasks} of {args.tasks}", timeout=120_000)
        opened = time.perf_counter() - began
        browser.close()
    rate = args.tasks * 4 / runtime if runtime else 0
    print(f"opened a finished {args.tasks}-task run in {opened:.2f} s")
    p99 = gaps[int(len(gaps) * 0.99)] if gaps else 0
    slow = sum(1 for g in gaps if g > 50)
    print(
        f"while it ran ({runtime:.1f} s, ~{rate:,.0f} transitions/s): {len(gaps)} frames, "
        f"p99 gap {p99:.0f} ms, longest {gaps[-1] if gaps else 0:.0f} ms, {slow} over 50 ms"
    )


if __name__ == "__main__":
    main()
