"""The console in a real browser (Debian's chromium, driven by Playwright):
create a workflow, see its errors at their line, execute it, watch the tasks
reach `succeeded` live, pause and resume a run, the token prompt with auth
on; any console error or failed request fails the test. Screenshots go to
`BATON_SCREENSHOTS` (or a temporary folder), printed at the end."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from baton import Client

from .conftest import Server

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
    page.locator("#events-table tbody tr.clickable", has_text="o7").click()
    sync_api.expect(page.locator("#event-detail")).to_contain_text('"n": 7')
    page.screenshot(path=str(shots / "topic.png"), full_page=True)
    w.check()
    page.close()
