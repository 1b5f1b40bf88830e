"""A seller in the network pattern: answers each offer with a counter offer
to whoever sent it."""

import json
import sys

call = json.load(sys.stdin)
counter = 150 - call["message"]["offer"]
print(json.dumps({"send": [{"to": call["from"], "message": {"counter": counter}}]}))
