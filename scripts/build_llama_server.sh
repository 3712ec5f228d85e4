#!/usr/bin/env bash
# Builds llama.cpp's llama-server from the llama.cpp source vendored in the llama-cpp-python
# sdist of the version installed in the venv (nothing is fetched but that sdist, from PyPI),
# and prints the binary's path as the last line of stdout.
#
#   scripts/build_llama_server.sh            # PYTHON defaults to .venv/bin/python, then python3
#   PYTHON=/path/to/python scripts/build_llama_server.sh
#
# The binary lands in .cache/llama-server/<version>/llama-server (LLAMA_SERVER_CACHE overrides
# .cache/llama-server); when it is already there the build is skipped. Needs cmake and a C++
# compiler: it fails loudly when they are missing (apt-get install -y cmake g++).
#
# CPU only, not tuned to this machine (GGML_NATIVE=OFF: AVX2/FMA/F16C), with AMX off: the CI
# machines advertise AMX but llama.cpp's AMX kernels segfault there (see
# src/kimi_modes/engines/embedded/model.py). No web UI (its assets would be downloaded), no
# HTTPS, no tests or examples.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

if [ -z "${PYTHON:-}" ]; then
  if [ -x "$root/.venv/bin/python" ]; then PYTHON="$root/.venv/bin/python"; else PYTHON=python3; fi
fi
version="$("$PYTHON" -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))')" \
  || { echo "build_llama_server: llama-cpp-python is not installed for $PYTHON" >&2; exit 1; }
cache="${LLAMA_SERVER_CACHE:-$root/.cache/llama-server}"
dest="$cache/$version"
binary="$dest/llama-server"

if [ -x "$binary" ]; then
  echo "$binary"
  exit 0
fi

for tool in cmake c++; do
  command -v "$tool" >/dev/null \
    || { echo "build_llama_server: '$tool' not found: apt-get install -y cmake g++" >&2; exit 1; }
done

work="$(mktemp -d "${TMPDIR:-/tmp}/llama-server-build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
started=$(date +%s)
# Each step's output goes to one log, shown (its end) only when a step fails.
log="$work/build.log"
quietly() {
  "$@" >>"$log" 2>&1 || {
    echo "build_llama_server: failed: $*" >&2
    tail -n 60 "$log" >&2
    exit 1
  }
}

echo "build_llama_server: building llama-server from the llama-cpp-python $version sdist" >&2
quietly "$PYTHON" -m pip download --no-deps --no-binary :all: \
  "llama-cpp-python==$version" -d "$work"
tar -xzf "$work"/llama_cpp_python-"$version".tar.gz -C "$work"
src="$work/llama_cpp_python-$version/vendor/llama.cpp"
[ -f "$src/tools/server/CMakeLists.txt" ] \
  || { echo "build_llama_server: no tools/server in $src" >&2; exit 1; }

quietly cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release \
  -DBUILD_SHARED_LIBS=OFF -DGGML_BACKEND_DL=OFF \
  -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
  -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF \
  -DGGML_CCACHE=OFF -DLLAMA_OPENSSL=OFF \
  -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF \
  -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON
quietly cmake --build "$work/build" --target llama-server -j "${LLAMA_SERVER_JOBS:-2}"

quietly "$work/build/bin/llama-server" --version
mkdir -p "$dest"
install -m 0755 "$work/build/bin/llama-server" "$binary.tmp"
mv "$binary.tmp" "$binary"
echo "build_llama_server: built in $(( $(date +%s) - started ))s" >&2
echo "$binary"
