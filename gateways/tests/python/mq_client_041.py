"""Turnstone 0.4.1's own MQ client, unmodified, against our nodes.

Usage: mq_client_041.py HOST PORT PREFIX TARGET_NODE ROUNDS
Prints one JSON object with what the client saw.
"""

import json
import sys
import time

from turnstone.mq.broker import RedisBroker
from turnstone.mq.client import TurnstoneClient
from turnstone.mq.protocol import ApprovalRequestEvent

host, port, prefix, target, rounds = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
client = TurnstoneClient(broker=RedisBroker(host=host, port=port, prefix=prefix), prefix=prefix)


def summary(result):
    return {
        "ws_id": result.ws_id,
        "content": result.content,
        "ok": result.ok,
        "timed_out": result.timed_out,
        "errors": result.errors,
        "tools": result.tool_results,
    }


def slow_to_subscribe(event):
    # The client subscribes to a new workstream's channel only after this callback has seen
    # ws_created: a busy client machine, made certain.
    if event.type == "ws_created":
        time.sleep(0.3)


out = {"new": [], "follow_up": None, "directed": None, "approved": None, "nodes": None}
# A new workstream per send: the first events race the client's late subscription.
for i in range(rounds):
    out["new"].append(summary(client.send_and_wait(f"py new {i}", timeout=15, on_event=slow_to_subscribe)))
ws_id = out["new"][0]["ws_id"]
out["follow_up"] = summary(client.send_and_wait("py follow-up", ws_id=ws_id, timeout=15))
out["directed"] = summary(client.send_and_wait("py directed", target_node=target, timeout=15))
out["directed_node"] = client._broker.get_ws_owner(out["directed"]["ws_id"])


def answer(event):
    if isinstance(event, ApprovalRequestEvent):
        client.approve(request_id=event.correlation_id, ws_id=event.ws_id, approved=True)


out["approved"] = summary(
    client.send_and_wait("py needs approval", ws_id=ws_id, auto_approve=False, timeout=15, on_event=answer)
)
out["nodes"] = sorted(n["node_id"] for n in client.list_nodes())
client.close()
print(json.dumps(out))
