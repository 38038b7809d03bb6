# shellcheck shell=bash
# Installs (Debian packages) and starts the real services the tests use, on loopback ports of
# their own, and exports their URLs:
#   TURNSTONE_TEST_REDIS_URL     redis://127.0.0.1:16399/
#   TURNSTONE_TEST_DATABASE_URL  postgresql://postgres@127.0.0.1:55439/turnstone_test
#   TURNSTONE_TEST_OTLP_ENDPOINT http://127.0.0.1:14318 (rotel, an OTLP collector from PyPI)
#   TURNSTONE_TEST_OTLP_LOG      the collector's debug log of received spans
#   TURNSTONE_TEST_LLAMA_URL     http://127.0.0.1:18090/v1 (llama-server + SmolLM2-135M, scripts/llm.sh)
#   TURNSTONE_TEST_SYNAPSE_URL   http://127.0.0.1:18008 (Matrix Synapse from PyPI), with
#   TURNSTONE_TEST_SYNAPSE_SECRET its registration shared secret
# Sourced by scripts/test. `services_up` starts what is not running yet; `services_down` stops
# what this shell started (set TURNSTONE_KEEP_SERVICES=1 to leave them up between runs).

# Outside $HOME: the postgres user must be able to reach its data directory.
TS_SERVICES_DIR="${TS_SERVICES_DIR:-/var/tmp/turnstone-services}"
TS_REDIS_PORT="${TURNSTONE_TEST_REDIS_PORT:-16399}"
TS_PG_PORT="${TURNSTONE_TEST_PG_PORT:-55439}"
TS_OTLP_PORT="${TURNSTONE_TEST_OTLP_PORT:-14318}"
TS_ROTEL_VERSION="0.0.1a15"
TS_SYNAPSE_PORT="${TURNSTONE_TEST_SYNAPSE_PORT:-18008}"
TS_SYNAPSE_VERSION="1.163.2"
TS_STARTED=()
TS_APT_UPDATED=0

ts_log() { printf '[services] %s\n' "$*" >&2; }

ts_apt_install() {
  if [ "$TS_APT_UPDATED" = 0 ]; then
    ts_log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    TS_APT_UPDATED=1
  fi
  ts_log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

ts_wait() { # ts_wait SECONDS COMMAND...
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then return 1; fi
    sleep 0.1
  done
}

ts_redis_up() {
  command -v redis-server >/dev/null || ts_apt_install redis-server
  local dir="$TS_SERVICES_DIR/redis"
  mkdir -p "$dir"
  if redis-cli -p "$TS_REDIS_PORT" ping 2>/dev/null | grep -q PONG; then
    ts_log "redis already up on $TS_REDIS_PORT"
  else
    redis-server --port "$TS_REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
      --daemonize yes --dir "$dir" --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
    ts_wait 10 sh -c "redis-cli -p $TS_REDIS_PORT ping | grep -q PONG" \
      || { ts_log "redis did not start; see $dir/redis.log"; return 1; }
    TS_STARTED+=(redis)
    ts_log "redis started on $TS_REDIS_PORT"
  fi
  export TURNSTONE_TEST_REDIS_URL="redis://127.0.0.1:$TS_REDIS_PORT/"
}

ts_pg_bin() {
  if command -v pg_config >/dev/null && [ -x "$(pg_config --bindir)/initdb" ]; then
    pg_config --bindir
  else
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
  fi
}

ts_postgres_up() {
  local bin
  bin="$(ts_pg_bin)"
  if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
    ts_apt_install postgresql
    bin="$(ts_pg_bin)"
  fi
  local data="$TS_SERVICES_DIR/pgdata"
  local as_pg=(runuser -u postgres --)
  [ "$(id -u)" = 0 ] || as_pg=()
  if [ ! -f "$data/PG_VERSION" ]; then
    mkdir -p "$data"
    chmod 755 "$TS_SERVICES_DIR"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$data" && chmod 700 "$data"
    "${as_pg[@]}" "$bin/initdb" -D "$data" -A trust -U postgres --no-sync -E UTF8 --locale=C.UTF-8 >/dev/null
  fi
  if "$bin/pg_isready" -h 127.0.0.1 -p "$TS_PG_PORT" >/dev/null 2>&1; then
    ts_log "postgresql already up on $TS_PG_PORT"
  else
    "${as_pg[@]}" "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w start \
      -o "-h 127.0.0.1 -p $TS_PG_PORT -k $data -c fsync=off -c full_page_writes=off -c synchronous_commit=off" >/dev/null \
      || { ts_log "postgresql did not start; see $data/server.log"; return 1; }
    TS_STARTED+=(postgres)
    ts_log "postgresql started on $TS_PG_PORT"
  fi
  if ! psql -h 127.0.0.1 -p "$TS_PG_PORT" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='turnstone_test'" | grep -q 1; then
    psql -h 127.0.0.1 -p "$TS_PG_PORT" -U postgres -qc 'CREATE DATABASE turnstone_test' >/dev/null
  fi
  TS_PG_BIN="$bin"
  # Tests that stop and start a PostgreSQL of their own use the same binaries.
  export TURNSTONE_TEST_PG_BIN="$bin"
  TS_PG_DATA="$data"
  export TURNSTONE_TEST_DATABASE_URL="postgresql://postgres@127.0.0.1:$TS_PG_PORT/turnstone_test"
}

ts_port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

ts_otlp_up() {
  local dir="$TS_SERVICES_DIR/rotel"
  local agent="$dir/rotel-agent-$TS_ROTEL_VERSION"
  mkdir -p "$dir"
  if [ ! -x "$agent" ]; then
    ts_log "pip download rotel==$TS_ROTEL_VERSION"
    python3 -m pip download -q --no-deps -d "$dir/dl" "rotel==$TS_ROTEL_VERSION"
    # The wheel carries the collector binary; extracting it avoids the wheel's Python tag.
    python3 - "$dir/dl" "$agent" <<'PY'
import glob, sys, zipfile
wheel = sorted(glob.glob(sys.argv[1] + "/rotel-*.whl"))[-1]
with zipfile.ZipFile(wheel) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("rotel/rotel-agent"))
PY
    chmod +x "$agent"
  fi
  export TURNSTONE_TEST_OTLP_LOG="$dir/rotel.log"
  if ts_port_open "$TS_OTLP_PORT"; then
    ts_log "otlp collector already up on $TS_OTLP_PORT"
  else
    "$agent" start --otlp-grpc-endpoint "127.0.0.1:$((TS_OTLP_PORT - 1))" \
      --otlp-http-endpoint "127.0.0.1:$TS_OTLP_PORT" --exporter blackhole \
      --debug-log traces --debug-log-verbosity detailed >"$TURNSTONE_TEST_OTLP_LOG" 2>&1 &
    TS_ROTEL_PID=$!
    ts_wait 10 ts_port_open "$TS_OTLP_PORT" \
      || { ts_log "rotel did not start; see $TURNSTONE_TEST_OTLP_LOG"; return 1; }
    TS_STARTED+=(otlp)
    ts_log "otlp collector (rotel) started on $TS_OTLP_PORT"
  fi
  export TURNSTONE_TEST_OTLP_ENDPOINT="http://127.0.0.1:$TS_OTLP_PORT"
}

# shellcheck source=scripts/llm.sh
source "$(dirname "${BASH_SOURCE[0]}")/llm.sh"

# MCP servers, installed once: the npm reference servers (everything, filesystem, memory) and
# PyPI's time and git servers in a virtualenv.
TS_MCP_NPM=(@modelcontextprotocol/server-everything@2026.8.31
  @modelcontextprotocol/server-filesystem@2026.8.31 @modelcontextprotocol/server-memory@2026.8.31)
TS_MCP_PYPI=(mcp-server-time==2026.10.19 mcp-server-git==2026.10.19)
ts_mcp_up() {
  local dir="$TS_SERVICES_DIR/mcp" py="$TS_SERVICES_DIR/mcp-py"
  local bin="$dir/node_modules/.bin"
  if [ ! -x "$bin/mcp-server-memory" ] || [ ! -x "$bin/mcp-server-filesystem" ] \
      || [ ! -x "$bin/mcp-server-everything" ]; then
    command -v npm >/dev/null || ts_apt_install nodejs npm
    mkdir -p "$dir"
    ts_log "npm install ${TS_MCP_NPM[*]}"
    (cd "$dir" && npm install --silent --no-audit --no-fund "${TS_MCP_NPM[@]}" >/dev/null)
  fi
  if [ ! -x "$py/bin/mcp-server-git" ] || [ ! -x "$py/bin/mcp-server-time" ]; then
    python3 -m venv "$py" 2>/dev/null || { ts_apt_install python3-venv && python3 -m venv "$py"; }
    command -v git >/dev/null || ts_apt_install git
    ts_log "pip install ${TS_MCP_PYPI[*]}"
    "$py/bin/pip" install --quiet --disable-pip-version-check "${TS_MCP_PYPI[@]}"
  fi
  export TURNSTONE_TEST_MCP_EVERYTHING="$bin/mcp-server-everything"
  export TURNSTONE_TEST_MCP_FILESYSTEM="$bin/mcp-server-filesystem"
  export TURNSTONE_TEST_MCP_MEMORY="$bin/mcp-server-memory"
  export TURNSTONE_TEST_MCP_TIME="$py/bin/mcp-server-time"
  export TURNSTONE_TEST_MCP_GIT="$py/bin/mcp-server-git"
  # The official Python MCP SDK, for the test servers in tests/mcp/.
  export TURNSTONE_TEST_MCP_PYTHON="$py/bin/python"
}

# Turnstone 0.4.1 itself (PyPI), the peer our wire compatibility is tested against: its MQ
# client, server, bridge and console in the tests, its server, console and simulator in the
# benchmarks.
ts_turnstone041_up() {
  local venv="$TS_SERVICES_DIR/ts041"
  if [ ! -x "$venv/bin/turnstone-server" ] || ! "$venv/bin/python" -c 'import redis, croniter' 2>/dev/null; then
    python3 -m venv "$venv" 2>/dev/null || { ts_apt_install python3-venv && python3 -m venv "$venv"; }
    ts_log "pip install turnstone[mq,sim,console]==0.4.1"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'turnstone[mq,sim,console]==0.4.1' 'mcp<2'
  fi
  export TURNSTONE_TEST_TS041_PYTHON="$venv/bin/python"
}

# Matrix Synapse (PyPI) on loopback, for the channel gateway's Matrix adapter: SQLite, no
# federation, rate limits raised so tests are not throttled (one test lowers them itself).
ts_synapse_up() {
  local venv="$TS_SERVICES_DIR/synapse-py" dir="$TS_SERVICES_DIR/synapse"
  if [ ! -x "$venv/bin/synctl" ]; then
    python3 -m venv "$venv" 2>/dev/null || { ts_apt_install python3-venv && python3 -m venv "$venv"; }
    ts_log "pip install matrix-synapse==$TS_SYNAPSE_VERSION"
    "$venv/bin/pip" install --quiet --disable-pip-version-check --only-binary :all: \
      "matrix-synapse==$TS_SYNAPSE_VERSION"
  fi
  export TURNSTONE_TEST_SYNAPSE_URL="http://127.0.0.1:$TS_SYNAPSE_PORT"
  export TURNSTONE_TEST_SYNAPSE_SECRET="turnstone-test-shared-secret"
  if ts_port_open "$TS_SYNAPSE_PORT"; then
    ts_log "synapse already up on $TS_SYNAPSE_PORT"
    return 0
  fi
  mkdir -p "$dir"
  local limit='{per_second: 1000, burst_count: 1000}'
  cat >"$dir/homeserver.yaml" <<YAML
server_name: "test.local"
pid_file: "$dir/homeserver.pid"
listeners:
  - {port: $TS_SYNAPSE_PORT, bind_addresses: ['127.0.0.1'], type: http, tls: false,
     x_forwarded: false, resources: [{names: [client], compress: false}]}
database: {name: sqlite3, args: {database: "$dir/homeserver.db"}}
media_store_path: "$dir/media_store"
signing_key_path: "$dir/test.local.signing.key"
registration_shared_secret: "$TURNSTONE_TEST_SYNAPSE_SECRET"
macaroon_secret_key: "turnstone-test-macaroon"
form_secret: "turnstone-test-form"
report_stats: false
trusted_key_servers: []
suppress_key_server_warning: true
presence: {enabled: false}
bcrypt_rounds: 4
rc_message: $limit
rc_registration: $limit
rc_login: {address: $limit, account: $limit, failed_attempts: $limit}
rc_joins: {local: $limit, remote: $limit}
rc_invites: {per_room: $limit, per_user: $limit, per_issuer: $limit}
rc_admin_redaction: $limit
YAML
  (cd "$dir" && "$venv/bin/python" -m synapse.app.homeserver --config-path homeserver.yaml \
    --generate-keys >/dev/null 2>&1)
  (cd "$dir" && exec "$venv/bin/python" -m synapse.app.homeserver \
    --config-path homeserver.yaml >"$dir/synapse.log" 2>&1) &
  TS_SYNAPSE_PID=$!
  ts_wait 60 ts_port_open "$TS_SYNAPSE_PORT" \
    || { ts_log "synapse did not start; see $dir/synapse.log"; return 1; }
  TS_STARTED+=(synapse)
  ts_log "synapse started on $TS_SYNAPSE_PORT"
}

# Headless Chromium and chromedriver (Debian packages) for the browser UI tests.
ts_chromium_up() {
  if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    ts_apt_install chromium chromium-driver
  fi
  export TURNSTONE_TEST_CHROMIUM
  TURNSTONE_TEST_CHROMIUM="$(command -v chromium)"
  export TURNSTONE_TEST_CHROMEDRIVER
  TURNSTONE_TEST_CHROMEDRIVER="$(command -v chromedriver)"
}

services_up() {
  # tmux drives the terminal programs in their tests.
  command -v tmux >/dev/null || ts_apt_install tmux
  ts_redis_up
  ts_postgres_up
  ts_otlp_up
  ts_llama_up
  ts_mcp_up
  ts_turnstone041_up
  ts_synapse_up
  ts_chromium_up
}

services_down() {
  if [ "${TURNSTONE_KEEP_SERVICES:-0}" = 1 ]; then return 0; fi
  local s
  for s in "${TS_STARTED[@]}"; do
    case "$s" in
      redis) redis-cli -p "$TS_REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true ;;
      otlp) kill "$TS_ROTEL_PID" 2>/dev/null || true ;;
      llama) kill "$TS_LLAMA_PID" 2>/dev/null || true ;;
      synapse) kill "$TS_SYNAPSE_PID" 2>/dev/null || true ;;
      postgres)
        local as_pg=(runuser -u postgres --)
        [ "$(id -u)" = 0 ] || as_pg=()
        "${as_pg[@]}" "$TS_PG_BIN/pg_ctl" -D "$TS_PG_DATA" -m fast stop >/dev/null 2>&1 || true ;;
    esac
  done
}
