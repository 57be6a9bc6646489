#!/usr/bin/env bash
# Load matrix for `amanuensis serve`: starts the server twice (default
# --max-batch, then --max-batch 1), runs bench/loadgen.py at 1, 4, 16 and 50
# concurrent clients with short clips (jfk.wav, 11 s) and 60 s clips
# (silero-test.wav), and prints one markdown table plus the batching speed-up
# (throughput at the default max-batch / at max-batch 1 per cell).
#
#   bench/load.sh [MODEL]                 # the matrix, 60 s per cell
#   bench/load.sh --soak [MODEL]          # 10 minutes at 50 clients (both clips): the RSS curve
#
# Options (before MODEL):
#   --duration S        seconds of load per cell (default 60; env LOAD_DURATION)
#   --clients "1 4 16 50"   concurrencies (env LOAD_CLIENTS)
#   --clips "short long"    short = jfk.wav, long = silero-test.wav (env LOAD_CLIPS)
#   --max-batch "default 1" server configurations (env LOAD_MAX_BATCH; "default" = no flag)
#   --max-drain S       after a cell's deadline, give up on requests still in flight after S
#                       seconds (reported as "unfinished"; default: the cell duration)
#   --soak              one 600 s run (--soak-duration S) at 50 clients, with the RSS curve
#   --temperature T     the requests' temperature (default 1; env LOAD_TEMPERATURE). A random-weight
#                       model at 0 falls back through all six temperatures, which a real model
#                       rarely does; 1 is one pass of --best-of (5) samples per window, the same
#                       number of sequences as beam search at 0. Use 0 with real weights.
#   --threads N         server threads (default: the server's default)
#   --bin PATH          the amanuensis binary (default build-load/amanuensis, else build/amanuensis)
#   --out DIR           JSON results and server logs (default out/load/<timestamp>)
#   -- ARGS...          extra `amanuensis serve` arguments (e.g. --beam-size 1)
# Without MODEL a base-shaped random model is made at models/base-random.bin.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

duration="${LOAD_DURATION:-60}"
clients="${LOAD_CLIENTS:-1 4 16 50}"
clips="${LOAD_CLIPS:-short long}"
batches="${LOAD_MAX_BATCH:-default 1}"
max_drain=""
temperature="${LOAD_TEMPERATURE:-1}"
soak=0
soak_duration=600
threads=""
bin=""
out=""
model=""
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration="$2"; shift 2 ;;
    --clients) clients="$2"; shift 2 ;;
    --clips) clips="$2"; shift 2 ;;
    --max-batch) batches="$2"; shift 2 ;;
    --max-drain) max_drain="$2"; shift 2 ;;
    --temperature) temperature="$2"; shift 2 ;;
    --soak) soak=1; shift ;;
    --soak-duration) soak_duration="$2"; shift 2 ;;
    --threads|-t) threads="$2"; shift 2 ;;
    --bin) bin="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "load.sh: unknown option $1" >&2; exit 2 ;;
    *) model="$1"; shift ;;
  esac
done

if [ -z "$bin" ]; then
  for b in build-load/amanuensis build/amanuensis; do [ -x "$b" ] && { bin=$b; break; }; done
fi
[ -n "$bin" ] && [ -x "$bin" ] || { echo "load.sh: no amanuensis binary (build it, or --bin PATH)" >&2; exit 2; }
if [ -z "$model" ]; then
  model=models/base-random.bin
  [ -f "$model" ] || { mkdir -p models; "$bin" make-test-model --arch base --seed 1 -o "$model"; }
fi
[ -f "$model" ] || { echo "load.sh: model $model not found" >&2; exit 2; }
audio="${AMA_AUDIO_DIR:-$root/../shared/audio}"
short_clip="$audio/jfk.wav"
long_clip="$audio/silero-test.wav"
out="${out:-out/load/$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$out"
max_drain="${max_drain:-$duration}"

server_pid=""
stop_server() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 600); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$server_pid" 2>/dev/null && { echo "load.sh: server did not exit 60 s after SIGTERM" >&2; kill -KILL "$server_pid"; }
    wait "$server_pid" 2>/dev/null || true
  fi
  server_pid=""
}
trap stop_server EXIT
trap 'exit 130' INT TERM

# start_server LOG ARGS...: sets server_pid and url.
start_server() {
  local log=$1; shift
  "$bin" serve -m "$model" --host 127.0.0.1 --port 0 --max-queue 64 "$@" >"$log" 2>&1 &
  server_pid=$!
  url=""
  for _ in $(seq 1 1200); do
    url=$(grep -o 'listening on http://[0-9.:]*' "$log" 2>/dev/null | head -1 | sed 's/^listening on //') || true
    [ -n "$url" ] && break
    kill -0 "$server_pid" 2>/dev/null || { echo "load.sh: server exited:" >&2; cat "$log" >&2; exit 1; }
    sleep 0.1
  done
  [ -n "$url" ] || { echo "load.sh: server did not print its address in 120 s" >&2; cat "$log" >&2; exit 1; }
  python3 bench/loadgen.py wait "$url" --timeout 300 --pid "$server_pid" || { cat "$log" >&2; exit 1; }
}

run_cell() {  # run_cell NAME CLIENTS DURATION CLIP_TAG CLIP_FILE MAX_BATCH_TAG
  local name=$1 c=$2 d=$3 tag=$4 files=$5 mb=$6 f
  local fargs=()
  for f in $files; do fargs+=(--file "$f"); done
  echo "== $name: $c clients x ${d} s, $tag clip, max-batch $mb" >&2
  # Start from an idle server: requests given up in the previous cell are being cancelled.
  python3 bench/loadgen.py wait "$url" --idle --timeout 120 --pid "$server_pid" || true
  python3 bench/loadgen.py --url "$url" "${fargs[@]}" --concurrency "$c" --duration "$d" \
    --max-drain "$max_drain" --temperature "$temperature" --server-pid "$server_pid" --tag "clip=$tag" --tag "max_batch=$mb" \
    --json "$out/$name.json" >&2 || true
}

serve_args=()
[ -n "$threads" ] && serve_args+=(-t "$threads")
serve_args+=("${extra[@]}")

jsons=()
if [ "$soak" = 1 ]; then
  start_server "$out/server-soak.log" "${serve_args[@]}"
  max_drain=60
  run_cell soak 50 "$soak_duration" short+long "$short_clip $long_clip" default
  jsons+=("$out/soak.json")
  stop_server
else
  for mb in $batches; do
    args=("${serve_args[@]}")
    [ "$mb" != default ] && args+=(--max-batch "$mb")
    start_server "$out/server-mb$mb.log" "${args[@]}"
    for clip in $clips; do
      case "$clip" in
        short) file=$short_clip ;;
        long) file=$long_clip ;;
        *) file=$clip; clip=$(basename "$clip") ;;
      esac
      for c in $clients; do
        run_cell "mb$mb-$clip-c$c" "$c" "$duration" "$clip" "$file" "$mb"
        jsons+=("$out/mb$mb-$clip-c$c.json")
      done
    done
    stop_server
  done
fi

echo
echo "amanuensis serve load: model $(basename "$model"), $(nproc) cores, temperature $temperature, ${duration} s per cell$([ "$soak" = 1 ] && echo " (soak: ${soak_duration} s)"); results in $out"
echo
python3 bench/loadgen.py table "${jsons[@]}"
