"""The console in a real browser (Debian's chromium, driven by Playwright):
create a workflow, see its errors at their line, execute it, watch the tasks
reach `succeeded` live, pause and resume a run, the token prompt with auth
on; any console error or failed request fails the test. Screenshots go to
`BATON_SCREENSHOTS` (or a temporary folder), printed at the end."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from baton import Client

from .conftest import Server, binary

if os.environ.get("CI"):
    from playwright import sync_api  # in CI the browser tests must run
else:
    sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

FLOW = """name: console_demo
agents:
  steady: { type: simulate, latency: 150ms }
tasks:
  - id: fetch
    agent: steady
  - id: parse
    agent: steady
    depends_on: [fetch]
  - id: index
    agent: steady
    depends_on: [fetch]
  - id: report
    agent: steady
    depends_on: [parse, index]
    input: { format: pdf }
"""

GATED = {
    "name": "gated",
    "tasks": [
        {"id": "first"},
        {"id": "gate", "depends_on": ["first"], "wait_for": {"type": "go", "key": "console"}},
        {"id": "last", "depends_on": ["gate"]},
    ],
}


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = Path(os.environ.get("BATON_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    yield folder
    print(f"\nconsole screenshots: {folder}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


class Watched:
    """A page that records console errors and failed requests."""

    def __init__(self, browser: Any, width: int = 1280, height: int = 900) -> None:
        self.page = browser.new_page(viewport={"width": width, "height": height})
        self.problems: list[str] = []
        self.expected: set[int] = set()
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.on("requestfailed", self._failed)
        self.page.on("response", self._response)

    def _console(self, message: Any) -> None:
        if message.type == "error" and "Failed to load resource" not in message.text:
            self.problems.append(f"console: {message.text}")

    def _failed(self, request: Any) -> None:
        # Streams are cut when the page moves on: that is not a failure.
        if "/events" not in request.url:
            self.problems.append(f"request failed: {request.url} {request.failure}")

    def _response(self, response: Any) -> None:
        if response.status >= 400 and response.status not in self.expected:
            self.problems.append(f"{response.status} from {response.url}")

    def check(self) -> None:
        assert not self.problems, self.problems


def test_create_execute_watch_pause_resume(server: Server, browser: Any, shots: Path) -> None:
    w = Watched(browser)
    page = w.page
    page.goto(server.url + "/")
    assert page.url.endswith("/ui/"), page.url
    page.wait_for_selector("h1:has-text('Runs')")
    page.screenshot(path=str(shots / "runs-empty.png"))

    # A workflow with an error: shown with its line.
    page.goto(server.url + "/ui/#/new")
    w.expected.add(422)
    page.fill(
        "#workflow-text",
        FLOW.replace("depends_on: [fetch]\n  - id: index", "depends_on: [fetc]\n  - id: index"),
    )
    page.click("#create")
    page.wait_for_selector(".error-box")
    assert "unknown task" in page.inner_text(".error-box")
    assert page.locator("#error-lines .bad").count() == 1
    page.screenshot(path=str(shots / "new-workflow-error.png"))
    w.expected.discard(422)

    page.fill("#workflow-text", FLOW)
    page.click("#create")
    page.wait_for_selector("#execute")
    assert "console_demo" in page.inner_text("h1")
    schedule = page.locator("#schedule-table tbody tr")
    sync_api.expect(schedule).to_have_count(4)
    sync_api.expect(schedule.last).to_contain_text("2.00 s")
    page.screenshot(path=str(shots / "workflow.png"), full_page=True)

    page.fill("#run-input", '{"q": "rust"}')
    page.click("#execute")
    page.wait_for_selector("#dag g.node")
    # Live: every task reaches succeeded without a reload.
    done = page.locator("#dag g.node[data-status=succeeded]")
    sync_api.expect(done).to_have_count(4, timeout=20_000)
    page.wait_for_selector("h1 .badge.s-completed")
    page.click("#dag g.node[data-task=report]")
    page.wait_for_selector("#task-detail >> text=pdf")
    page.screenshot(path=str(shots / "run.png"), full_page=True)

    with Client(server.url) as client:
        gated = client.create_workflow(GATED)
        run = client.execute(gated["id"])["execution_id"]
        page.goto(f"{server.url}/ui/#/runs/{run}")
        page.click("#action-pause")
        page.wait_for_selector("h1 .badge.s-paused")
        page.click("#action-resume")
        page.wait_for_selector("h1 .badge.s-executing")
        client.publish([{"type": "go", "key": "console"}])
        page.wait_for_selector("h1 .badge.s-completed", timeout=20_000)

    page.goto(server.url + "/ui/#/runs")
    page.wait_for_selector("tbody tr.clickable")
    assert page.locator("tbody tr.clickable").count() == 2
    page.screenshot(path=str(shots / "runs.png"))
    page.goto(server.url + "/ui/#/workflows")
    page.wait_for_selector("tbody tr.clickable")
    page.screenshot(path=str(shots / "workflows.png"))

    narrow = Watched(browser, width=390, height=800)
    narrow.page.goto(page.url.replace("#/workflows", f"#/runs/{run}"))
    narrow.page.wait_for_selector("h1 .badge.s-completed")
    narrow.page.screenshot(path=str(shots / "run-narrow.png"), full_page=True)
    narrow.page.close()
    narrow.check()
    w.check()
    page.close()


def test_the_token_prompt(secured: Server, browser: Any, shots: Path) -> None:
    w = Watched(browser)
    w.expected.add(401)
    page = w.page
    page.goto(secured.url + "/ui/")
    page.wait_for_selector(".modal #token-input")
    assert "auth_token" in page.inner_text(".modal")
    page.screenshot(path=str(shots / "token-prompt.png"))
    page.fill("#token-input", str(secured.token))
    page.click(".modal button[type=submit]")
    page.wait_for_selector("h1:has-text('Runs')")
    page.wait_for_selector("tbody td")
    assert page.locator(".modal").count() == 0
    assert str(secured.token) not in page.url
    w.expected.discard(401)
    page.goto(secured.url + "/ui/#/workflows")
    page.wait_for_selector("tbody td")
    w.check()
    page.close()


def test_the_events_pages(server: Server, browser: Any, shots: Path) -> None:
    """Topics with their groups' lag and pending events, and a topic's
    events with their payload."""
    with Client(server.url) as client:
        client.publish(
            [{"type": "order.created", "key": f"o{i}", "payload": {"n": i}} for i in range(30)],
            topic="orders",
        )
        held = client.poll("orders", "billing", max=3, wait_ms=1000)
        assert len(held) == 3
    w = Watched(browser)
    page = w.page
    page.goto(server.url + "/ui/#/events")
    row = page.locator("tbody tr", has_text="orders")
    sync_api.expect(row).to_contain_text("billing: 27 / 3")
    page.screenshot(path=str(shots / "events.png"))
    row.click()
    page.wait_for_selector("#events-table tbody tr.clickable")
    sync_api.expect(page.locator("h2 + .table-wrap").first).to_contain_text("billing")
    page.locator("#groups-table tbody tr", has_text="billing").click()
    held_rows = page.locator("#pending-table tbody tr")
    sync_api.expect(held_rows).to_have_count(3)
    sync_api.expect(held_rows.first).to_contain_text("python")
    page.locator("#events-table tbody tr.clickable", has_text="o7").click()
    sync_api.expect(page.locator("#event-detail")).to_contain_text('"n": 7')
    page.screenshot(path=str(shots / "topic.png"), full_page=True)
    w.check()
    page.close()


def test_dead_letters_are_opened_and_redriven(tmp_path: Path, browser: Any, shots: Path) -> None:
    """A dead letter's reason and payload, then "Redrive" moves every letter
    back to its topic, where the group that gave up on it receives it again."""
    server = Server(tmp_path / "data", config="visibility_timeout_ms = 100\nmax_deliveries = 1\n")
    try:
        with Client(server.url) as client:
            client.publish(
                [{"type": "invoice", "key": f"i{i}", "payload": {"invoice": i}} for i in range(4)],
                topic="invoices",
            )
            assert len(client.poll("invoices", "mailer", max=10, wait_ms=1000)) == 4
            time.sleep(0.3)
            assert client.poll("invoices", "mailer", max=10, wait_ms=0) == []
        w = Watched(browser)
        page = w.page
        page.on("dialog", lambda dialog: dialog.accept())
        page.goto(server.url + "/ui/#/events/invoices.dlq")
        page.wait_for_selector("#events-table tbody tr.clickable")
        sync_api.expect(page.locator("#redrive-status")).to_contain_text("4 not redriven yet")
        page.locator("#events-table tbody tr.clickable", has_text="i2").click()
        detail = page.locator("#event-detail")
        sync_api.expect(detail).to_contain_text("not acknowledged after 1 delivery")
        sync_api.expect(detail).to_contain_text('"invoice": 2')
        page.screenshot(path=str(shots / "dead-letters.png"), full_page=True)
        page.locator("#redrive").click()
        sync_api.expect(page.locator("#redrive-status")).to_contain_text(
            "4 moved back to invoices; 0 left."
        )
        sync_api.expect(page.locator("#redrive")).to_be_disabled()
        w.check()
        page.close()
        with Client(server.url) as client:
            back = client.poll("invoices", "mailer", max=10, wait_ms=1000)
            assert sorted(d.payload["invoice"] for d in back) == [0, 1, 2, 3]
    finally:
        server.stop()


AWAITING_REVIEW = """name: awaiting_review
agents:
  quick: { type: simulate, latency: 5ms, concurrency: 4 }
  reviewer: { type: worker }
tasks:
  - id: draft
    agent: quick
  - id: review
    agent: reviewer
    depends_on: [draft]
"""


def test_the_agents_and_live_pages(server: Server, browser: Any, shots: Path) -> None:
    """An agent's load, a worker by its name holding a lease, then the live
    figures the server sampled (two samples, 2 s apart, are needed)."""
    with Client(server.url) as client:
        wf = client.create_workflow(AWAITING_REVIEW)
        runs = [client.execute(wf["id"])["execution_id"] for _ in range(3)]
        leased = client.poll_tasks("reviewer", max=2, wait_ms=5000, worker="review-desk:7")
        assert len(leased) >= 1
    w = Watched(browser)
    page = w.page
    page.goto(server.url + "/ui/#/agents")
    agents = page.locator("#agents-table tbody tr", has_text="reviewer")
    sync_api.expect(agents).to_contain_text("worker")
    sync_api.expect(page.locator("#agents-table tbody tr", has_text="quick")).to_contain_text("/ 4")
    sync_api.expect(page.locator("#workers-table")).to_contain_text("review-desk:7")
    lease_rows = page.locator("#leases-table tbody tr")
    sync_api.expect(lease_rows).to_have_count(len(leased))
    sync_api.expect(lease_rows.first).to_contain_text("review")
    assert any(run in page.locator("#leases-table").inner_text() for run in runs)
    page.screenshot(path=str(shots / "agents.png"), full_page=True)

    # A worker's partial output shows in the task's detail as it is reported.
    page.goto(f"{server.url}/ui/#/runs/{leased[0]['run']}")
    page.locator('[data-task="review"]').click()
    with Client(server.url) as client:
        client.report_progress(leased[0]["id"], {"read": "3 of 5 pages"})
    sync_api.expect(page.locator("#task-progress")).to_contain_text("3 of 5 pages")

    page.goto(server.url + "/ui/#/live")
    page.wait_for_selector(".live-chart svg polyline", state="attached", timeout=15_000)
    sync_api.expect(page.locator(".live-chart")).to_have_count(4)
    sync_api.expect(page.locator(".figures")).to_contain_text("transitions/s")
    page.screenshot(path=str(shots / "live.png"), full_page=True)
    w.check()
    page.close()


def test_the_benchmarks_page(server: Server, browser: Any, shots: Path, tmp_path: Path) -> None:
    """Reports written by this build's `baton bench` and `baton load`, opened
    from disk (nothing is uploaded): a real 4x slowdown is the worst change,
    a file of another kind is named, a baseline's trend is drawn, two load
    reports are compared; no sideways scroll at 390 px."""
    bench = [binary(), "bench", "planning", "--quick", "--sizes", "100", "--shapes", "chain,random"]

    def run(args: list[str], **env: str) -> None:
        done = subprocess.run(
            args, cwd=tmp_path, env={**os.environ, **env}, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr

    for _ in range(3):
        run([*bench, "--json", "a.json", "--save-baseline", "main"])
    run([*bench, "--json", "b.json"], BATON_BENCH_SLOWDOWN="planning/chain/100:4")
    for name, users in (("load-a.json", "2"), ("load-b.json", "4")):
        load = ["load", "--target", server.url, "--scenario", "health", "-u", users, "-i", "200"]
        run([binary(), *load, "--json", name])
    (tmp_path / "workflow.json").write_text('{"name": "hello", "tasks": [{"id": "a"}]}')
    first = [str(tmp_path / n) for n in ("a.json", "b.json", "workflow.json")]
    then = [str(tmp_path / ".baton" / "baselines" / "main.json")] + [
        str(tmp_path / n) for n in ("load-a.json", "load-b.json")
    ]

    w = Watched(browser)
    page = w.page
    page.goto(server.url + "/ui/#/bench")
    page.wait_for_selector("h1:has-text('Benchmarks')")
    page.set_input_files("#bench-files", first)
    rows = page.locator("#bench-compare tbody tr")
    sync_api.expect(rows.first).to_contain_text("planning/chain/100")
    sync_api.expect(rows.first).to_have_attribute("class", "bench-worse")
    sync_api.expect(page.locator(".error-box")).to_contain_text("workflow.json")
    page.fill("#bench-filter", "random")
    sync_api.expect(rows.first).to_contain_text("planning/random/100")
    page.fill("#bench-filter", "")
    sync_api.expect(rows.first).to_contain_text("planning/chain/100")

    page.set_input_files("#bench-files", then)
    page.wait_for_selector("#bench-trend svg polyline", state="attached")
    load_rows = page.locator("#load-compare tbody tr")
    sync_api.expect(load_rows.first).to_be_visible()
    # The filter narrows the load comparison too.
    page.fill("#bench-filter", "healthz")
    sync_api.expect(page.locator("#load-compare")).not_to_contain_text("Aggregated")
    page.fill("#bench-filter", "")
    sync_api.expect(page.locator("#load-compare")).to_contain_text("Aggregated")
    page.screenshot(path=str(shots / "benchmarks.png"), full_page=True)

    narrow = Watched(browser, width=390, height=800)
    narrow.page.goto(server.url + "/ui/#/bench")
    narrow.page.set_input_files("#bench-files", first + then)
    narrow.page.wait_for_selector("#bench-trend svg polyline", state="attached")
    assert narrow.page.evaluate("document.documentElement.scrollWidth") <= 390
    narrow.page.screenshot(path=str(shots / "benchmarks-narrow.png"), full_page=True)
    narrow.page.close()
    narrow.check()
    w.check()
    page.close()


FANOUT_AND_TEAM = {
    "name": "fanout_and_team",
    "agents": {
        "splitter": {
            "type": "simulate",
            "outputs": {"split": {"chunks": [f"c{i}" for i in range(60)]}},
        },
        "summarizer": {"type": "simulate", "latency": "5ms"},
        "n": {"type": "noop"},
    },
    "tasks": [
        {"id": "split", "agent": "splitter"},
        {
            "id": "summarize",
            "agent": "summarizer",
            "depends_on": ["split"],
            "for_each": {"items": "split.output.chunks", "max_parallel": 8},
        },
        {
            "id": "team",
            "depends_on": ["split"],
            "workflow": {"inline": {"name": "review_team", "tasks": [{"id": "read"}]}},
        },
        {"id": "merge", "agent": "n", "depends_on": ["summarize", "team"]},
    ],
}


def test_a_fan_out_is_one_node_with_paged_items_and_children_form_a_tree(
    server: Server, browser: Any, shots: Path
) -> None:
    """A fan-out of 60 items is one node with its count; its items are read
    a page at a time; the child run is in the run's tree and names its
    parent."""
    with Client(server.url) as client:
        wf = client.create_workflow(FANOUT_AND_TEAM)
        run = client.execute(wf["id"])["execution_id"]
        assert client.wait(run, timeout=30)["status"] == "completed"
    w = Watched(browser)
    page = w.page
    page.goto(f"{server.url}/ui/#/runs/{run}")
    node = page.locator('[data-task="summarize"]')
    sync_api.expect(node).to_contain_text("60/60")
    # The critical path as it ran ends with the last task.
    sync_api.expect(page.locator('[data-task="merge"]')).to_have_class(re.compile(r"\bactual\b"))
    node.click()
    sync_api.expect(page.locator("#task-decisions")).to_contain_text('"items":60')
    rows = page.locator("#instances-table tbody tr")
    sync_api.expect(rows).to_have_count(50)
    sync_api.expect(page.locator("#instances .pager")).to_contain_text("1\u201350 of 60")
    page.click("#instances-next")
    sync_api.expect(rows).to_have_count(10)
    sync_api.expect(rows.first).to_contain_text("50")
    tree = page.locator("#child-runs")
    sync_api.expect(tree).to_contain_text("review_team")
    page.screenshot(path=str(shots / "run-fan-out.png"), full_page=True)
    tree.locator("a").first.click()
    sync_api.expect(page.locator("h1")).to_contain_text("child of")
    sync_api.expect(page.locator("h1")).to_contain_text(run)
    w.check()
    page.close()
