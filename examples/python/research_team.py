"""A small multi-agent application on Baton's Python SDK: a lead (the
supervisor) splits a question among researchers, one per option, then asks a
writer to turn their findings into an answer, then finishes with it.

    baton serve &                      # in another terminal
    python examples/python/research_team.py --server http://127.0.0.1:8080

It serves the three agents with a `Worker`, posts the workflow
(research_team.yaml, beside this file), runs it, prints each decision as it
is made, and prints the answer.
"""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path
from typing import Any

import baton
from baton import Client, Task, Worker

# What the researchers "know": a real application would call a model or a
# search engine here.
FACTS = {
    "rust": {"speed": 9, "safety": 10, "learning": 4},
    "go": {"speed": 7, "safety": 7, "learning": 8},
    "zig": {"speed": 9, "safety": 6, "learning": 5},
}


def lead(task: Task) -> Any:
    """Turn 0: one researcher per option. Turn 1: the writer. Then finish."""
    conversation = task.data["conversation"]
    question = task.input["question"]
    if task.data["turn"] == 0:
        options = [o for o in re.findall(r"[a-z]+", question) if o in FACTS]
        return baton.delegate(*[("researcher", {"option": o}) for o in options])
    findings = [e["output"] for e in conversation if e["agent"] == "researcher"]
    drafts = [e["output"] for e in conversation if e["agent"] == "writer"]
    if not drafts:
        return baton.delegate(("writer", {"question": question, "findings": findings}))
    return baton.finish(drafts[-1])


def researcher(task: Task) -> dict[str, Any]:
    option = task.input["option"]
    task.progress(f"looking into {option}")
    facts = FACTS[option]
    return {"option": option, "score": sum(facts.values()), "facts": facts}


def writer(task: Task) -> dict[str, Any]:
    ranked = sorted(task.input["findings"], key=lambda f: -f["score"])
    best = ranked[0]
    others = ", ".join(f"{f['option']} ({f['score']})" for f in ranked[1:])
    return {
        "answer": best["option"],
        "why": f"{best['option']} scores {best['score']}, ahead of {others}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="http://127.0.0.1:8080")
    parser.add_argument("--token", default=None, help="the server's bearer token, if it has one")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    worker = Worker(args.server, token=args.token, wait_ms=1000)
    worker.agent("lead")(lead)
    worker.agent("researcher", concurrency=4)(researcher)
    worker.agent("writer")(writer)
    thread = worker.start()

    with Client(args.server, token=args.token) as client:
        flow = client.create_workflow(Path(__file__).with_name("research_team.yaml"))
        run = client.execute(flow["id"])["execution_id"]
        for event in client.events(run):
            if event.type == "baton.decision":
                print("decision:", event.payload)
            elif event.type == "baton.progress":
                print("progress:", event.payload["progress"])
        status = client.wait(run, timeout=60)
    worker.stop()
    thread.join(30)
    print(status["status"], status["tasks"][0]["output"])


if __name__ == "__main__":
    main()
