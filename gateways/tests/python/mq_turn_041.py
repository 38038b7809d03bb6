"""One turn through Turnstone 0.4.1's own MQ client, unmodified.

Usage: mq_turn_041.py HOST PORT PREFIX TARGET_NODE MESSAGE TIMEOUT
Prints one JSON object with what the client saw.
"""

import json
import sys

from turnstone.mq.broker import RedisBroker
from turnstone.mq.client import TurnstoneClient

host, port, prefix, target, message, timeout = sys.argv[1:7]
client = TurnstoneClient(broker=RedisBroker(host=host, port=int(port), prefix=prefix), prefix=prefix)
result = client.send_and_wait(message, target_node=target, timeout=float(timeout))
print(json.dumps({
    "ws_id": result.ws_id,
    "content": result.content,
    "ok": result.ok,
    "timed_out": result.timed_out,
    "errors": result.errors,
}))
client.close()
