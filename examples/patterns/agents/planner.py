"""A supervisor that decides from what it is given (the supervisor pattern).

Baton writes the call as JSON on stdin; the answer is JSON on stdout. On its
first turn the planner splits the question into sub-questions and delegates
one to `researcher` each; on the next it reads the researchers' answers in
the conversation and finishes, or asks `critic` to check them first when
they disagree.
"""

import json
import sys

call = json.load(sys.stdin)
question = call["input"]["question"]
conversation = call["conversation"]
answers = [c for c in conversation if c["agent"] == "researcher"]
reviews = [c for c in conversation if c["agent"] == "critic"]

if call["turn"] == 0:
    topics = [t.strip() for t in question.rstrip("?").split(" or ")]
    delegate = [{"agent": "researcher", "input": {"topic": t}} for t in topics]
    print(json.dumps({"delegate": delegate}))
elif not reviews and len({a["output"]["verdict"] for a in answers}) > 1:
    findings = [a["output"] for a in answers]
    print(json.dumps({"delegate": [{"agent": "critic", "input": {"findings": findings}}]}))
else:
    best = max(answers, key=lambda a: a["output"]["score"])["output"]
    print(json.dumps({"finish": {"choice": best["topic"], "turns": call["turn"] + 1}}))
