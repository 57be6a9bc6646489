#!/usr/bin/env bash
# The AVX-512 flash-attention kernels of BUILD_DIR's library against those
# of revision REV, alternated in one process (bench/ab/flash_ab.cpp).
#   bench/ab/flash_ab.sh REV [BUILD_DIR] [PAIRS]
# REV's src/ is extracted to a temporary directory; its
# flash_attention_avx512.cpp is compiled with its own headers, the exported
# names prefixed old_, and linked beside BUILD_DIR/libamanuensis_lib.a.
# A revision whose file exports other names than these fails to link, and
# buffers are sized by this build's flash_packed_size: for revisions with
# another packed layout the comparison does not hold.
set -euo pipefail
cd "$(dirname "$0")/../.."
rev="${1:?usage: bench/ab/flash_ab.sh REV [BUILD_DIR] [PAIRS]}"
build="${2:-build}"
pairs="${3:-15}"
lib="$build/libamanuensis_lib.a"
[ -f "$lib" ] || { echo "flash_ab.sh: error: $lib not found (cmake --build $build)" >&2; exit 1; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
git archive "$rev" src | tar -x -C "$tmp"
names=(flash_d64_avx512bf16 flash_d64_avx512vnni_bf16 flash_pack_kv_avx512 flash_pack_kv_int8_avx512
       flash_store_bf16_avx512 flash_exp2_avx512 flash_softmax_block_avx512)
defs=()
for n in "${names[@]}"; do defs+=("-D$n=old_$n"); done
flags=(-O3 -std=c++20 -mavx2 -mfma -mf16c -mavx512f -mavx512bw -mavx512vl -mavx512dq)
g++ "${flags[@]}" -I"$tmp/src" "${defs[@]}" -c "$tmp/src/backend/cpu/flash_attention_avx512.cpp" -o "$tmp/old.o"
g++ -O2 -std=c++20 -Isrc bench/ab/flash_ab.cpp "$tmp/old.o" "$lib" -lpthread -o "$tmp/flash_ab"
grep -m3 -E "^(model name|cpu family|model)\s" /proc/cpuinfo
for k in bf16 int8qk; do "$tmp/flash_ab" "$k" "$pairs"; done
