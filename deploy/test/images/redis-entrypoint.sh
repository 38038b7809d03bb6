#!/bin/sh
# As the upstream image: redis-server runs without protected mode (the network is the guard).
if [ "${1:-}" = "redis-server" ]; then
  shift
  exec redis-server "$@" --protected-mode no
fi
exec "$@"
