#!/usr/bin/env bash
# Build llama.cpp's llama-server from pinned official sources, cached outside the repo.
#
# The llama-cpp-python sdist vendors all of llama.cpp (tools/server included), and PyPI is
# a source we may reach; Debian 12 has no llama.cpp package. The build lands in
#   ${HEARTH_ENGINE_CACHE:-~/.cache/hearth/llama.cpp}/<version>/
# with bin/llama-server, and the vendored convert_*_to_gguf.py + gguf-py (LoRA -> GGUF).
# A second run finds the binary and returns at once. Without a compiler it prints one line
# and exits 0: Hearth then serves GGUF models on the torch engine.
set -euo pipefail

VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
CACHE="${HEARTH_ENGINE_CACHE:-$HOME/.cache/hearth/llama.cpp}/$VERSION"
PYTHON="${PYTHON:-python3}"
JOBS="${JOBS:-2}"
BIN="$CACHE/bin/llama-server"

if [ -x "$BIN" ] && "$BIN" --version >/dev/null 2>&1; then
    echo "llama-server $VERSION: cached at $BIN"
    exit 0
fi
for tool in cmake c++; do
    if ! command -v "$tool" >/dev/null; then
        echo "llama-server not built ($tool missing: apt-get install build-essential cmake); GGUF models will use the torch engine"
        exit 0
    fi
done

mkdir -p "$CACHE"
# one build at a time when several setups start together (CI and a developer on one machine)
exec 9>"$CACHE/.lock"
flock 9
if [ -x "$BIN" ]; then
    echo "llama-server $VERSION: built by another setup at $BIN"
    exit 0
fi

SDIST="$CACHE/llama_cpp_python-$VERSION.tar.gz"
if [ ! -f "$SDIST" ]; then
    echo "downloading llama-cpp-python $VERSION sources (vendors llama.cpp)"
    tmp="$(mktemp -d "$CACHE/dl.XXXXXX")"
    "$PYTHON" -m pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$tmp"
    mv "$tmp/llama_cpp_python-$VERSION.tar.gz" "$SDIST"
    rm -rf "$tmp"
fi

SRC="$CACHE/src"
if [ ! -f "$SRC/CMakeLists.txt" ]; then
    rm -rf "$SRC" "$CACHE/unpack"
    mkdir -p "$CACHE/unpack"
    tar -xzf "$SDIST" -C "$CACHE/unpack"
    mv "$CACHE/unpack/llama_cpp_python-$VERSION/vendor/llama.cpp" "$SRC"
    rm -rf "$CACHE/unpack"
fi

echo "building llama-server $VERSION (a few minutes on 2 cores; cached afterwards)"
# GGML_NATIVE=OFF: the -march=native build crashes in an AMX path on our CPUs, and a portable
# binary survives a move to another host. Static libs so bin/llama-server stands alone.
cmake -S "$SRC" -B "$SRC/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF \
    -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON >"$CACHE/cmake.log" 2>&1 ||
    { tail -20 "$CACHE/cmake.log"; exit 1; }
nice -n 10 cmake --build "$SRC/build" --target llama-server -j"$JOBS" >"$CACHE/build.log" 2>&1 ||
    { tail -30 "$CACHE/build.log"; exit 1; }

mkdir -p "$CACHE/bin"
cp "$SRC/build/bin/llama-server" "$BIN.tmp"
mv "$BIN.tmp" "$BIN"
"$BIN" --version 2>&1 | head -2
echo "llama-server $VERSION: built at $BIN"
