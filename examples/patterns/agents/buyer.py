"""A buyer in the network pattern: opens with an offer, accepts a counter
offer of 80 or less, and otherwise offers more."""

import json
import sys

call = json.load(sys.stdin)
if call["from"] is None:
    print(json.dumps({"send": [{"to": "seller", "message": {"offer": 50}}]}))
elif call["message"]["counter"] <= 80:
    print(json.dumps({"finish": {"deal": call["message"]["counter"], "round": call["round"]}}))
else:
    offer = 160 - call["message"]["counter"]
    print(json.dumps({"send": [{"to": "seller", "message": {"offer": offer}}]}))
