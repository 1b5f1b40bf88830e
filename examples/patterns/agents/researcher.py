"""A worker of the supervisor pattern: scores the topic it was given."""

import json
import sys

call = json.load(sys.stdin)
topic = call["input"]["topic"]
score = sum(ord(c) for c in topic.lower()) % 10
verdict = "yes" if score >= 5 else "no"
print(json.dumps({"topic": topic, "score": score, "verdict": verdict}))
