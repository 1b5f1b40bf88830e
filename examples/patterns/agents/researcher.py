"""A worker of the supervisor pattern: scores the topic it was given.

Lines on stderr that start with `BATON_PROGRESS ` report progress while it
works (`baton run --follow` prints them).
"""

import json
import sys

call = json.load(sys.stdin)
topic = call["input"]["topic"]
print("BATON_PROGRESS " + json.dumps({"reading": topic}), file=sys.stderr, flush=True)
score = sum(ord(c) for c in topic.lower()) % 10
verdict = "yes" if score >= 5 else "no"
print(json.dumps({"topic": topic, "score": score, "verdict": verdict}))
