"""Watches a simulated cluster from outside: counts the `turn_complete` events on the global
channel and samples Redis while a simulator runs, then prints one JSON line.

    python sim_observer.py REDIS_URL PREFIX SECONDS

Measured: turn_complete events seen, the shared queue's length at the end, Redis commands
processed during the window, and the highest number of live node heartbeats seen.
"""

import json
import sys
import time

import redis


def main() -> None:
    url, prefix, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    r = redis.Redis.from_url(url, decode_responses=True)
    pubsub = r.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(f"{prefix}:events:global")
    before = int(r.info("stats")["total_commands_processed"])
    start = time.monotonic()
    seen = 0
    first = last = None
    nodes = 0
    next_scan = start
    while time.monotonic() - start < seconds:
        message = pubsub.get_message(timeout=0.2)
        now = time.monotonic()
        if message and '"turn_complete"' in message["data"]:
            seen += 1
            first = first if first is not None else now
            last = now
        if now >= next_scan:
            next_scan = now + 2.0
            nodes = max(nodes, sum(1 for _ in r.scan_iter(f"{prefix}:node:*", count=1000)))
    after = int(r.info("stats")["total_commands_processed"])
    print(json.dumps({
        "turn_complete_seen": seen,
        "turns_per_sec": round(seen / (last - first), 2) if seen > 1 else 0.0,
        "shared_queue_left": r.llen(f"{prefix}:inbound"),
        "redis_commands": after - before,
        "max_live_nodes": nodes,
    }))


if __name__ == "__main__":
    main()
