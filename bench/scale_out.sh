#!/usr/bin/env bash
# Scale-out check: two `amanuensis serve` replicas behind haproxy
# (deploy/haproxy.cfg: round-robin, /health checks, retries with redispatch),
# bench/loadgen.py through haproxy, and SIGTERM to one replica mid-run. Passes
# (exit 0) when both replicas served requests, the terminated replica exited
# 0, the other kept serving, and the clients saw 0 errors and 0 lost
# responses. Prints a markdown table; --json writes the summary.
#
#   bench/scale_out.sh [options] [-- extra serve args]
#     --model PATH      (default ../shared/oracle/micro/model.bin)
#     --bin PATH        amanuensis binary (default build-load/amanuensis, else build/amanuensis)
#     --haproxy PATH    (default: haproxy on PATH, else /usr/sbin/haproxy)
#     --duration S      load duration (default 20)
#     --clients N       concurrent clients (default 4)
#     --term-after S    SIGTERM replica 2 this long into the run (default: duration / 2)
#     --file PATH       audio (default ../shared/audio/jfk.wav)
#     --temperature T   the requests' temperature (default 1: one sampling pass per window; a
#                       random-weight test model at 0 falls back through every temperature)
#     --json PATH       summary as JSON
#     --work DIR        logs, generated files (default: a temp dir, kept on failure)
# Extra serve args default to: --beam-size 1 --best-of 1 -t 1
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD

model="$root/../shared/oracle/micro/model.bin"
bin=""
hap=""
duration=20
clients=4
term_after=""
file="$root/../shared/audio/jfk.wav"
json_out=""
work=""
temperature=1
extra=(--beam-size 1 --best-of 1 -t 1)
while [ $# -gt 0 ]; do
  case "$1" in
    --model) model="$2"; shift 2 ;;
    --bin) bin="$2"; shift 2 ;;
    --haproxy) hap="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --clients) clients="$2"; shift 2 ;;
    --term-after) term_after="$2"; shift 2 ;;
    --file) file="$2"; shift 2 ;;
    --json) json_out="$2"; shift 2 ;;
    --temperature) temperature="$2"; shift 2 ;;
    --work) work="$2"; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "scale_out.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
fail() { echo "scale_out.sh: FAIL: $*" >&2; exit 1; }

if [ -z "$bin" ]; then
  for b in build-load/amanuensis build/amanuensis; do [ -x "$b" ] && { bin=$b; break; }; done
fi
[ -n "$bin" ] && [ -x "$bin" ] || fail "no amanuensis binary (build it, or --bin PATH)"
if [ -z "$hap" ]; then
  hap=$(command -v haproxy || true)
  [ -z "$hap" ] && [ -x /usr/sbin/haproxy ] && hap=/usr/sbin/haproxy
fi
[ -n "$hap" ] && [ -x "$hap" ] || fail "haproxy is not installed (apt-get install haproxy; scripts/install-deps.sh)"
[ -f "$model" ] || fail "model $model not found"
[ -f "$file" ] || fail "audio $file not found"
term_after="${term_after:-$(python3 -c "print($duration / 2)")}"
keep=0
if [ -z "$work" ]; then work=$(mktemp -d /tmp/ama-scale-out.XXXXXX); else mkdir -p "$work"; keep=1; fi

pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
  if [ "$keep" = 0 ] && [ "${ok:-0}" = 1 ]; then rm -rf "$work"; else echo "scale_out.sh: logs in $work" >&2; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# start_replica N: sets rep_pid[N], rep_url[N]
declare -a rep_pid rep_url
start_replica() {
  local n=$1 log="$work/replica$1.log" u=""
  "$bin" serve -m "$model" --host 127.0.0.1 --port 0 --max-queue 64 "${extra[@]}" >"$log" 2>&1 &
  rep_pid[$n]=$!
  pids+=($!)
  for _ in $(seq 1 600); do
    u=$(grep -o 'listening on http://[0-9.:]*' "$log" 2>/dev/null | head -1 | sed 's/^listening on //')
    [ -n "$u" ] && break
    kill -0 "${rep_pid[$n]}" 2>/dev/null || { cat "$log" >&2; fail "replica $n exited at start"; }
    sleep 0.1
  done
  [ -n "$u" ] || { cat "$log" >&2; fail "replica $n did not print its address"; }
  rep_url[$n]=$u
}
start_replica 1
start_replica 2
for n in 1 2; do
  python3 bench/loadgen.py wait "${rep_url[$n]}" --timeout 60 --pid "${rep_pid[$n]}" ||
    { cat "$work/replica$n.log" >&2; fail "replica $n not ready"; }
done

lb_port=$(free_port)
stats_port=$(free_port)
export AMA_LB_BIND="127.0.0.1:$lb_port" AMA_STATS_BIND="127.0.0.1:$stats_port"
export AMA_REPLICA_1="${rep_url[1]#http://}" AMA_REPLICA_2="${rep_url[2]#http://}"
"$hap" -c -q -f deploy/haproxy.cfg || fail "haproxy -c rejected deploy/haproxy.cfg"
"$hap" -db -f deploy/haproxy.cfg >"$work/haproxy.log" 2>&1 &
hap_pid=$!
pids+=($hap_pid)
lb="http://127.0.0.1:$lb_port"
stats="http://127.0.0.1:$stats_port/stats;csv"

# Both replicas UP in haproxy's health checks (rise 2 x inter 1s) before the load.
both_up=0
for _ in $(seq 1 100); do
  kill -0 "$hap_pid" 2>/dev/null || { cat "$work/haproxy.log" >&2; fail "haproxy exited"; }
  up=$(curl -fsS "$stats" 2>/dev/null | awk -F, '$1=="amanuensis" && ($2=="replica1" || $2=="replica2") && $18 ~ /^UP/' | wc -l)
  [ "$up" = 2 ] && { both_up=1; break; }
  sleep 0.2
done
[ "$both_up" = 1 ] || { curl -sS "$stats" >&2; fail "replicas not UP in haproxy after 20 s"; }

python3 bench/loadgen.py --url "$lb" --file "$file" --concurrency "$clients" --duration "$duration" \
  --temperature "$temperature" --timeout 60 --no-metrics --server-pid "${rep_pid[1]}" --server-pid "${rep_pid[2]}" \
  --label scale-out --json "$work/load.json" >"$work/load.txt" 2>&1 &
load_pid=$!
pids+=($load_pid)
sleep "$term_after"
# What replica 2 had served just before it was told to go (its own counters).
curl -fsS "${rep_url[2]}/metrics" >"$work/replica2-metrics-before-term.txt" 2>/dev/null
t_term=$(date +%s.%N)
kill -TERM "${rep_pid[2]}"
rep2_exit=timeout
for _ in $(seq 1 600); do
  if ! kill -0 "${rep_pid[2]}" 2>/dev/null; then wait "${rep_pid[2]}"; rep2_exit=$?; break; fi
  sleep 0.1
done
drain_s=$(python3 -c "import time; print(round(time.time() - $t_term, 2))")
wait "$load_pid"
load_rc=$?
cat "$work/load.txt"
curl -fsS "$stats" >"$work/stats.csv" 2>/dev/null || fail "no haproxy stats"
curl -fsS "${rep_url[1]}/metrics" >"$work/replica1-metrics.txt" 2>/dev/null

python3 - "$work" "$rep2_exit" "$drain_s" "$load_rc" "$json_out" <<'EOF'
import csv, json, sys
work, rep2_exit, drain_s, load_rc, json_out = sys.argv[1:6]
load = json.load(open(work + "/load.json"))
rows = list(csv.reader(open(work + "/stats.csv")))
hdr = [h.lstrip("# ") for h in rows[0]]
col = {h: i for i, h in enumerate(hdr)}
per = {}
for r in rows[1:]:
    if len(r) > 2 and r[0] == "amanuensis":
        g = lambda k: int(r[col[k]] or 0) if k in col else 0
        per[r[1]] = {"sessions": g("stot"), "2xx": g("hrsp_2xx"), "5xx": g("hrsp_5xx"),
                     "retries": g("wretr"), "redispatches": g("wredis"), "status": r[col["status"]]}
s = {
    "ok": load["ok"], "errors": load["errors"], "errors_by_status": load["errors_by_status"],
    "lost": load["lost"], "lost_by_kind": load["lost_by_kind"], "requests_per_s": load["requests_per_s"],
    "latency_ms": load["latency_ms"], "replicas": per,
    "replica2_exit": rep2_exit, "replica2_drain_s": float(drain_s), "loadgen_exit": int(load_rc),
}
r1, r2 = per.get("replica1", {}), per.get("replica2", {})
checks = {
    "no lost responses": s["lost"] == 0,
    "no errors": s["errors"] == 0,
    "requests completed": s["ok"] > 0,
    "replica1 served": r1.get("2xx", 0) > 0,
    "replica2 served": r2.get("2xx", 0) > 0,
    "replica2 exited 0 after SIGTERM": rep2_exit == "0",
    "replica2 DOWN in haproxy": r2.get("status", "").startswith(("DOWN", "MAINT")),
}
s["checks"] = checks
s["pass"] = all(checks.values())
print()
print("| replica | 2xx | 5xx | sessions | retries | redispatches | haproxy status |")
print("|---|---:|---:|---:|---:|---:|---|")
for name in sorted(per):
    p = per[name]
    if name in ("BACKEND",):
        continue
    print("| %s | %d | %d | %d | %d | %d | %s |" % (name, p["2xx"], p["5xx"], p["sessions"], p["retries"],
                                                  p["redispatches"], p["status"]))
lat = load["latency_ms"]
print()
print("| clients | duration s | ok | errors | lost | req/s | p50 ms | p99 ms | replica2 exit | replica2 drain s |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
print("| %d | %s | %d | %d | %d | %.2f | %s | %s | %s | %.2f |" % (load["concurrency"], load["duration_s"], load["ok"],
      load["errors"], load["lost"], load["requests_per_s"], lat["p50"], lat["p99"], rep2_exit, float(drain_s)))
print()
for k, v in checks.items():
    print("%s %s" % ("PASS" if v else "FAIL", k))
if json_out:
    with open(json_out, "w") as f:
        json.dump(s, f, indent=1)
sys.exit(0 if s["pass"] else 1)
EOF
rc=$?
[ "$rc" = 0 ] && ok=1
exit "$rc"
