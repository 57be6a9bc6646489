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
# GNU OpenMP's default wait policy keeps oneDNN's worker spinning after each
# matmul, and since the two sides alternate, that spinning thread competed
# with our pool for the 2 cores: on a loaded machine, base 1500x512x512 at 2
# threads took ours 24.1 ms and oneDNN 48.0 ms (bf16), 14.4 and 15.9 with
# passive waiting (int8: 12.2 / 46.7 against 9.4 / 7.0). Our pool polls only
# a few tens of microseconds before sleeping, so passive is the like-for-like
# setting. libgomp reads it at load time, hence here and not in the program.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
mkdir -p "$(dirname "$out")"
"$bench" --onednn-compare --threads 1,2 "$@" > "$out.tmp"
mv "$out.tmp" "$out"
echo "onednn.sh: wrote $out" >&2
