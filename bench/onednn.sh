#!/usr/bin/env bash
# Our GEMMs against oneDNN's matmul (Debian's libdnnl-dev 2.6) in the same
# process, at every encoder GEMM shape of tiny, base, small and medium, in
# f32, bf16 and int8, at 1 and 2 threads (amanuensis_bench --onednn-compare,
# bench/onednn_compare.cpp). Writes the markdown table to OUT (default
# out/onednn.md) and exits non-zero if any result differs from oneDNN's by
# more than the arithmetic's expected error. About 15 minutes on 2 cores.
#   bench/onednn.sh [BUILD_DIR] [OUT] [-- extra options: --models base --types int8 --threads 2 --reps 9]
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build}"
out="${2:-out/onednn.md}"
shift $(( $# > 2 ? 2 : $# ))
[ "${1:-}" = "--" ] && shift
bench="$build/amanuensis_bench"
if [ ! -x "$bench" ]; then
  echo "onednn.sh: error: $bench not found (cmake --build $build --target amanuensis_bench)" >&2
  exit 1
fi
mkdir -p "$(dirname "$out")"
"$bench" --onednn-compare --threads 1,2 "$@" > "$out.tmp"
mv "$out.tmp" "$out"
echo "onednn.sh: wrote $out" >&2
