#!/usr/bin/env python3
"""Closed-loop load generator for `amanuensis serve` (python3 standard library only).

N client threads each post an audio file (multipart/form-data, the OpenAI
`POST /v1/audio/transcriptions` shape) in a closed loop for a fixed time; the
requests in flight at the deadline are allowed to finish (bounded by
--timeout). Reports requests/s, latency percentiles, errors by HTTP status,
lost responses (connection errors, resets, timeouts), audio seconds
transcribed per wall second, the server's RSS over time (--server-pid, read
from /proc/PID/status every second) and, with --metrics-url, the queue depth
and batch occupancy from the server's Prometheus /metrics.

  bench/loadgen.py --url http://127.0.0.1:8080 --file ../shared/audio/jfk.wav \
      --concurrency 4 --duration 30 --server-pid $(pidof amanuensis) --json out.json

  bench/loadgen.py table out/load/*.json     # markdown table of saved runs
  bench/loadgen.py wait http://127.0.0.1:8080  # until /health answers 200

Exit status: 0 when every request got a 2xx response, 1 when some failed or
were lost, 2 on bad arguments.
"""

import argparse
import http.client
import json
import math
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
import wave

# ---------------------------------------------------------------- audio files


def audio_seconds(path):
    """Duration of an audio file: the WAV header, else ffprobe, else None."""
    try:
        with wave.open(path, "rb") as w:
            return w.getnframes() / float(w.getframerate())
    except Exception:
        pass
    try:
        out = subprocess.run(
            ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", path],
            capture_output=True, text=True, timeout=30)
        return float(out.stdout.strip())
    except Exception:
        return None


CONTENT_TYPES = {".wav": "audio/wav", ".mp3": "audio/mpeg", ".ogg": "audio/ogg", ".opus": "audio/ogg",
                 ".flac": "audio/flac", ".m4a": "audio/mp4", ".mp4": "audio/mp4", ".webm": "audio/webm"}


class Upload:
    """One file's multipart/form-data body, built once and re-sent by every client."""

    def __init__(self, path, fields):
        self.path = path
        self.name = os.path.basename(path)
        self.seconds = audio_seconds(path)
        with open(path, "rb") as f:
            data = f.read()
        self.boundary = "----amanuensis-loadgen-" + uuid.uuid4().hex
        ctype = CONTENT_TYPES.get(os.path.splitext(path)[1].lower(), "application/octet-stream")
        parts = []
        for k, v in fields:
            parts.append(("--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n%s\r\n"
                          % (self.boundary, k, v)).encode())
        parts.append(("--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"%s\"\r\n"
                      "Content-Type: %s\r\n\r\n" % (self.boundary, self.name, ctype)).encode())
        parts.append(data)
        parts.append(("\r\n--%s--\r\n" % self.boundary).encode())
        self.body = b"".join(parts)
        self.content_type = "multipart/form-data; boundary=" + self.boundary


# -------------------------------------------------------------------- clients


class Result:
    __slots__ = ("t0", "t1", "status", "error", "file", "audio_s", "proc_s", "rtf")

    def __init__(self, t0, t1, status, error, file, audio_s, proc_s=None, rtf=None):
        self.t0, self.t1, self.status, self.error = t0, t1, status, error
        self.file, self.audio_s, self.proc_s, self.rtf = file, audio_s, proc_s, rtf


def _float_header(resp, name):
    v = resp.getheader(name)
    if v is None:
        return None
    m = re.match(r"\s*([-+0-9.eE]+)", v)
    try:
        return float(m.group(1)) if m else None
    except ValueError:
        return None


class Client(threading.Thread):
    def __init__(self, idx, args, target, uploads, deadline, results, lock, abandon):
        super().__init__(daemon=True, name="client-%d" % idx)
        self.idx, self.args, self.target, self.uploads = idx, args, target, uploads
        self.deadline, self.results, self.lock = deadline, results, lock
        self.abandon = abandon  # set after --max-drain: in-flight requests are given up, not "lost"
        self.conn = None

    def give_up(self):
        c = self.conn
        if c is not None and c.sock is not None:
            try:
                c.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def connect(self):
        u = self.target
        cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
        self.conn = cls(u.hostname, u.port or (443 if u.scheme == "https" else 80), timeout=self.args.timeout)

    def close(self):
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:
                pass
            self.conn = None

    def one(self, up):
        headers = {"Content-Type": up.content_type, "Content-Length": str(len(up.body)),
                   "User-Agent": "amanuensis-loadgen"}
        if self.args.api_key:
            headers["Authorization"] = "Bearer " + self.args.api_key
        if not self.args.keep_alive:
            headers["Connection"] = "close"
        t0 = time.monotonic()
        try:
            if self.conn is None:
                self.connect()
            self.conn.request("POST", self.args.path_, body=up.body, headers=headers)
            resp = self.conn.getresponse()
            payload = resp.read()
            t1 = time.monotonic()
        except (OSError, http.client.HTTPException) as e:  # refused, reset, timeout, closed without a response
            self.close()
            if self.abandon.is_set():
                return Result(t0, time.monotonic(), None, "unfinished", up.name, up.seconds)
            err = "timeout" if isinstance(e, (socket.timeout, TimeoutError)) else type(e).__name__
            return Result(t0, time.monotonic(), None, err, up.name, up.seconds)
        status = resp.status
        if resp.will_close or not self.args.keep_alive:
            self.close()
        audio = up.seconds
        if audio is None and self.args.response_format == "verbose_json" and 200 <= status < 300:
            try:
                audio = float(json.loads(payload).get("duration"))
            except Exception:
                audio = None
        return Result(t0, t1, status, None, up.name, audio,
                      _float_header(resp, "X-Processing-Time"), _float_header(resp, "X-Realtime-Factor"))

    def run(self):
        n = self.idx  # clients start at different files and cycle through them
        while time.monotonic() < self.deadline:
            up = self.uploads[n % len(self.uploads)]
            n += 1
            r = self.one(up)
            with self.lock:
                self.results.append(r)
            if r.error is not None or (r.status is not None and r.status >= 500):
                time.sleep(0.05)  # do not spin on a dead server
        self.close()


# ------------------------------------------------------------------- sampling


def read_rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def parse_prometheus(text):
    """{'name{labels}': value} of a Prometheus text exposition."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue
        try:
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
        except ValueError:
            pass
    return out


def scrape(url, api_key=None, timeout=2.0):
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=timeout)
    try:
        headers = {"Authorization": "Bearer " + api_key} if api_key else {}
        conn.request("GET", (u.path or "/metrics") + ("?" + u.query if u.query else ""), headers=headers)
        r = conn.getresponse()
        body = r.read().decode("utf-8", "replace")
        return parse_prometheus(body) if r.status == 200 else None
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def metric_sum(m, pattern):
    """Sum of the samples whose name matches `pattern` (a regex on the bare name)."""
    rx = re.compile(pattern)
    vals = [v for k, v in m.items() if rx.fullmatch(k.split("{", 1)[0])]
    return sum(vals) if vals else None


# amanuensis serve's gauges (src/server/metrics.cpp); loose fallbacks for other servers.
QUEUE_NAMES = ["amanuensis_queue_depth", r".*queue_depth"]
OCC_NAMES = ["amanuensis_batch_occupancy", r".*batch_occupancy"]
WINDOWS_NAMES = ["amanuensis_batch_windows"]


def first_metric(m, names):
    for n in names:
        v = metric_sum(m, n)
        if v is not None:
            return v
    return None


class Sampler(threading.Thread):
    """Every `interval` s: VmRSS of each pid and the queue depth / occupancy gauges from /metrics."""

    def __init__(self, pids, metrics_urls, api_key, interval=1.0):
        super().__init__(daemon=True, name="sampler")
        self.pids, self.urls, self.api_key, self.interval = pids, metrics_urls, api_key, interval
        self.stop_ev = threading.Event()
        self.t_start = time.monotonic()
        self.rss = []  # (t, total_kb or None, {pid: kb})
        self.queue = []  # (t, total queue depth)
        self.occ = []  # (t, batch occupancy 0..1, windows in the step): sampled while decoding

    def sample_once(self):
        t = time.monotonic() - self.t_start
        if self.pids:
            per = {p: read_rss_kb(p) for p in self.pids}
            alive = [v for v in per.values() if v is not None]
            self.rss.append((t, sum(alive) if alive else None, per))
        q = None
        for url in self.urls:
            m = scrape(url, self.api_key)
            if not m:
                continue
            qq = first_metric(m, QUEUE_NAMES)
            if qq is not None:
                q = (q or 0) + qq
            occ, win = first_metric(m, OCC_NAMES), first_metric(m, WINDOWS_NAMES)
            if occ is not None and (win is None or win > 0) and occ > 0:
                self.occ.append((t, occ, win))
        if q is not None:
            self.queue.append((t, q))

    def run(self):
        while True:
            self.sample_once()
            if self.stop_ev.wait(self.interval):
                break
        self.sample_once()

    def stop(self):
        self.stop_ev.set()
        self.join(timeout=10)


def counter_delta(before, after, pattern):
    if not after:
        return None
    a = metric_sum(after, pattern)
    if a is None:
        return None
    b = metric_sum(before, pattern) if before else None
    return a - (b or 0.0)


# -------------------------------------------------------------------- report


def percentile(sorted_vals, p):
    if not sorted_vals:
        return None
    k = (len(sorted_vals) - 1) * p / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (k - lo)


def downsample(points, n):
    if len(points) <= n:
        return list(points)
    step = (len(points) - 1) / float(n - 1)
    return [points[round(i * step)] for i in range(n)]


def summarize(args, uploads, results, t_start, t_deadline, t_end, sampler, m_before, m_after):
    ok = [r for r in results if r.status is not None and 200 <= r.status < 300]
    errors = {}
    for r in results:
        if r.status is not None and not 200 <= r.status < 300:
            errors[str(r.status)] = errors.get(str(r.status), 0) + 1
    lost = {}
    for r in results:
        if r.error is not None and r.error != "unfinished":
            lost[r.error] = lost.get(r.error, 0) + 1
    unfinished = sum(1 for r in results if r.error == "unfinished")
    lat = sorted(r.t1 - r.t0 for r in ok)
    wall = max(t_end - t_start, 1e-9)
    audio = sum(r.audio_s or 0.0 for r in ok)
    proc = [r.proc_s for r in ok if r.proc_s is not None]
    rtf = [r.rtf for r in ok if r.rtf is not None]

    def ms(v):
        return None if v is None else round(v * 1000.0, 1)

    rep = {
        "url": args.url + args.path_,
        "label": args.label,
        "tags": dict(kv.partition("=")[::2] for kv in args.tag),
        "files": [{"name": u.name, "audio_seconds": u.seconds, "bytes": len(u.body)} for u in uploads],
        "concurrency": args.concurrency,
        "duration_s": args.duration,
        "wall_s": round(wall, 3),
        "drain_s": round(max(t_end - t_deadline, 0.0), 3),
        "requests": len(results),
        "ok": len(ok),
        "errors": sum(errors.values()),
        "errors_by_status": errors,
        "lost": sum(lost.values()),
        "lost_by_kind": lost,
        "unfinished": unfinished,
        "requests_per_s": round(len(ok) / wall, 4),
        "latency_ms": {"min": ms(lat[0]) if lat else None, "mean": ms(sum(lat) / len(lat)) if lat else None,
                        "p50": ms(percentile(lat, 50)), "p95": ms(percentile(lat, 95)),
                        "p99": ms(percentile(lat, 99)), "max": ms(lat[-1]) if lat else None},
        "audio_seconds": round(audio, 3),
        "audio_s_per_s": round(audio / wall, 4),
        "server_processing_ms_mean": ms(sum(proc) / len(proc)) if proc else None,
        "server_rtf_mean": round(sum(rtf) / len(rtf), 4) if rtf else None,
    }
    if sampler is not None and sampler.rss:
        vals = [(t, v) for t, v, _ in sampler.rss if v is not None]
        rep["rss"] = {
            "pids": args.server_pid,
            "start_mb": round(vals[0][1] / 1024.0, 1) if vals else None,
            "end_mb": round(vals[-1][1] / 1024.0, 1) if vals else None,
            "min_mb": round(min(v for _, v in vals) / 1024.0, 1) if vals else None,
            "max_mb": round(max(v for _, v in vals) / 1024.0, 1) if vals else None,
            "samples": len(vals),
            "curve_mb": [[round(t, 1), round(v / 1024.0, 1)] for t, v in vals],
        }
    if sampler is not None and sampler.queue:
        rep["queue_depth"] = {"max": max(v for _, v in sampler.queue),
                              "mean": round(sum(v for _, v in sampler.queue) / len(sampler.queue), 2),
                              "curve": [[round(t, 1), v] for t, v in sampler.queue]}
    if sampler is not None and sampler.occ:
        rep["batch_occupancy"] = {
            "mean": round(sum(o for _, o, _ in sampler.occ) / len(sampler.occ), 3),
            "max_windows": max((w for _, _, w in sampler.occ if w is not None), default=None),
            "samples": len(sampler.occ)}  # 1 s samples of the gauge while a batch was decoding
    server = {}
    for key, pat in (("transcriptions", r"amanuensis_transcriptions_total"),
                     ("audio_seconds", r"amanuensis_audio_seconds_total"),
                     ("processing_seconds", r"amanuensis_processing_seconds_total"),
                     ("decoder_steps", r"amanuensis_decoder_steps_total"),
                     ("busy_seconds", r"amanuensis_scheduler_busy_seconds_total")):
        d = counter_delta(m_before, m_after, pat)
        if d is not None:
            server[key] = round(d, 3)
    if m_after:
        rq = {}
        for k, v in m_after.items():
            if k.startswith("amanuensis_http_requests_total{") and "transcriptions" in k:
                st = re.search(r'status="(\d+)"', k)
                if st:
                    rq[st.group(1)] = v - (m_before or {}).get(k, 0.0)
        if rq:
            server["transcription_requests_by_status"] = rq
        lifetime = metric_sum(m_after, "amanuensis_batch_occupancy_average")
        if lifetime is not None:
            server["batch_occupancy_average_lifetime"] = lifetime
    if server:
        rep["server_metrics_delta"] = server
    return rep


def fmt(v, nd=1):
    if v is None:
        return "-"
    if isinstance(v, float):
        return ("%." + str(nd) + "f") % v
    return str(v)


def print_report(rep, out=sys.stdout):
    lat = rep["latency_ms"]
    rows = [
        ("target", rep["url"]),
        ("files", ", ".join("%s (%s s)" % (f["name"], fmt(f["audio_seconds"])) for f in rep["files"])),
        ("clients x duration", "%d x %s s (wall %.1f s, drain %.1f s)" % (rep["concurrency"], fmt(rep["duration_s"]),
                                                                         rep["wall_s"], rep["drain_s"])),
        ("requests", "%d sent, %d ok" % (rep["requests"], rep["ok"])),
        ("errors", "%d %s" % (rep["errors"], json.dumps(rep["errors_by_status"]) if rep["errors"] else "")),
        ("lost", "%d %s" % (rep["lost"], json.dumps(rep["lost_by_kind"]) if rep["lost"] else "")),
        ("unfinished at --max-drain", str(rep["unfinished"])),
        ("requests/s", fmt(rep["requests_per_s"], 3)),
        ("latency ms p50/p95/p99", "%s / %s / %s (min %s, max %s)" % (fmt(lat["p50"]), fmt(lat["p95"]),
                                                                    fmt(lat["p99"]), fmt(lat["min"]),
                                                                    fmt(lat["max"]))),
        ("audio-s/s", fmt(rep["audio_s_per_s"], 3)),
    ]
    if rep.get("server_processing_ms_mean") is not None:
        rows.append(("server X-Processing-Time", "%s ms mean" % fmt(rep["server_processing_ms_mean"])))
    if rep.get("server_rtf_mean") is not None:
        rows.append(("server X-Realtime-Factor", "%s mean" % fmt(rep["server_rtf_mean"], 3)))
    if "rss" in rep:
        r = rep["rss"]
        curve = downsample(r["curve_mb"], 8)
        rows.append(("server RSS MB", "start %s, min %s, max %s, end %s (%d samples)" % (
            fmt(r["start_mb"]), fmt(r["min_mb"]), fmt(r["max_mb"]), fmt(r["end_mb"]), r["samples"])))
        rows.append(("RSS curve (t s: MB)", "  ".join("%s: %s" % (fmt(t, 0), fmt(v)) for t, v in curve)))
    if "queue_depth" in rep:
        rows.append(("queue depth", "max %s, mean %s" % (fmt(rep["queue_depth"]["max"], 0),
                                                          fmt(rep["queue_depth"]["mean"], 2))))
    if "batch_occupancy" in rep:
        b = rep["batch_occupancy"]
        rows.append(("batch occupancy", "%s mean while decoding, max %s windows (%d samples)" % (
            fmt(b["mean"], 2), fmt(b["max_windows"], 0), b["samples"])))
    if "server_metrics_delta" in rep:
        rows.append(("server /metrics delta", json.dumps(rep["server_metrics_delta"])))
    w = max(len(k) for k, _ in rows)
    for k, v in rows:
        print("%-*s  %s" % (w, k, v), file=out)


# ----------------------------------------------------------------------- main


def table_main(argv):
    """`loadgen.py table A.json B.json ...`: one markdown table of the runs and, when runs with
    max_batch=1 exist, the batching speed-up (throughput at the other max-batch / at 1)."""
    ap = argparse.ArgumentParser(prog="loadgen.py table")
    ap.add_argument("json", nargs="+")
    args = ap.parse_args(argv)
    reps = []
    for p in args.json:
        try:
            with open(p) as f:
                reps.append(json.load(f))
        except (OSError, ValueError) as e:
            print("skipping %s: %s" % (p, e), file=sys.stderr)

    def sec(v):
        return "-" if v is None else "%.2f" % (v / 1000.0)

    print("| clients | clip | max-batch | req/s | p50 s | p95 s | p99 s | ok | errors | lost | unfinished "
          "| audio-s/s | RSS start MB | RSS max MB | batch occ. | queue max |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in reps:
        t, lat, rss = r.get("tags", {}), r["latency_ms"], r.get("rss", {})
        clip = t.get("clip") or "+".join(f["name"] for f in r["files"])
        occ = r.get("batch_occupancy", {}).get("mean")
        q = r.get("queue_depth", {}).get("max")
        errs = str(r["errors"]) + ("" if not r["errors"] else " " + ",".join(
            "%s:%d" % kv for kv in sorted(r["errors_by_status"].items())))
        print("| %d | %s | %s | %.3f | %s | %s | %s | %d | %s | %d | %d | %.2f | %s | %s | %s | %s |" % (
            r["concurrency"], clip, t.get("max_batch", "-"), r["requests_per_s"], sec(lat["p50"]), sec(lat["p95"]),
            sec(lat["p99"]), r["ok"], errs, r["lost"], r.get("unfinished", 0), r["audio_s_per_s"],
            fmt(rss.get("start_mb")), fmt(rss.get("max_mb")), fmt(occ, 2), fmt(q, 0)))
    base = {}
    for r in reps:
        t = r.get("tags", {})
        if t.get("max_batch") == "1":
            base[(t.get("clip"), r["concurrency"])] = r
    rows = []
    for r in reps:
        t = r.get("tags", {})
        b = base.get((t.get("clip"), r["concurrency"]))
        if b is not None and t.get("max_batch") != "1":
            rows.append((r["concurrency"], t.get("clip"), t.get("max_batch"), r["audio_s_per_s"], b["audio_s_per_s"]))
    if rows:
        print()
        print("Batching speed-up (throughput at max-batch N / at max-batch 1, same clients and clip):")
        print()
        print("| clients | clip | max-batch | audio-s/s | audio-s/s at max-batch 1 | speed-up |")
        print("|---:|---|---:|---:|---:|---:|")
        for c, clip, mb, a, a1 in rows:
            print("| %d | %s | %s | %.2f | %.2f | %s |" % (c, clip, mb, a, a1,
                                                       "%.2fx" % (a / a1) if a1 > 0 else "-"))
    if any("rss" in r and len(r["rss"].get("curve_mb", [])) > 20 for r in reps):
        print()
        print("RSS curves (t s: MB):")
        print()
        for r in reps:
            if "rss" in r and len(r["rss"].get("curve_mb", [])) > 20:
                t = r.get("tags", {})
                print("- %d clients, %s, max-batch %s: %s" % (
                    r["concurrency"], t.get("clip", "-"), t.get("max_batch", "-"),
                    "  ".join("%s: %s" % (fmt(a, 0), fmt(b)) for a, b in downsample(r["rss"]["curve_mb"], 12))))
    return 0


def wait_main(argv):
    """`loadgen.py wait URL [--timeout S] [--pid P]`: poll URL/health until 200; exit 1 on timeout
    or when process P exits first."""
    ap = argparse.ArgumentParser(prog="loadgen.py wait")
    ap.add_argument("url")
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--pid", type=int, default=None)
    ap.add_argument("--idle", action="store_true",
                    help="also wait until /metrics shows an empty queue (amanuensis_queue_depth 0)")
    args = ap.parse_args(argv)
    u = urllib.parse.urlsplit(args.url.rstrip("/") + "/health")
    end = time.monotonic() + args.timeout
    while time.monotonic() < end and args.idle:
        m = scrape(args.url.rstrip("/") + "/metrics")
        depth = first_metric(m, QUEUE_NAMES) if m else None
        if depth is None or depth <= 0:
            break
        time.sleep(0.5)
    while time.monotonic() < end:
        if args.pid is not None and not os.path.exists("/proc/%d" % args.pid):
            print("wait: process %d exited" % args.pid, file=sys.stderr)
            return 1
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=2)
        try:
            conn.request("GET", u.path)
            if conn.getresponse().status == 200:
                return 0
        except (OSError, http.client.HTTPException):
            pass
        finally:
            conn.close()
        time.sleep(0.2)
    print("wait: %s not ready after %.0f s" % (args.url, args.timeout), file=sys.stderr)
    return 1


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "table":
        return table_main(argv[1:])
    if argv and argv[0] == "wait":
        return wait_main(argv[1:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="server base URL, e.g. http://127.0.0.1:8080")
    ap.add_argument("--path", default="/v1/audio/transcriptions")
    ap.add_argument("--file", action="append", required=True, help="audio file to post (repeatable)")
    ap.add_argument("-c", "--concurrency", type=int, default=1)
    ap.add_argument("-d", "--duration", type=float, default=10.0, help="seconds to keep issuing requests")
    ap.add_argument("--timeout", type=float, default=600.0, help="per-request timeout, s (then it counts as lost)")
    ap.add_argument("--max-drain", type=float, default=None,
                    help="after the deadline wait at most this long for in-flight requests, then give them up "
                         "(reported as 'unfinished', not lost); default: wait up to --timeout")
    ap.add_argument("--model", default="whisper-1")
    ap.add_argument("--response-format", default="json")
    ap.add_argument("--temperature", default=None)
    ap.add_argument("--language", default=None)
    ap.add_argument("--field", action="append", default=[], metavar="K=V", help="extra multipart form field")
    ap.add_argument("--api-key", default=os.environ.get("AMANUENSIS_API_KEY"))
    ap.add_argument("--no-keep-alive", dest="keep_alive", action="store_false",
                    help="one connection per request (default: keep-alive per client)")
    ap.add_argument("--server-pid", type=int, action="append", default=[],
                    help="sample /proc/PID/status VmRSS every second (repeatable: replicas are summed)")
    ap.add_argument("--metrics-url", action="append", default=[],
                    help="Prometheus /metrics to scrape (queue depth every second, batch occupancy, counters); "
                         "repeatable. Default: URL/metrics when --url is a single server")
    ap.add_argument("--no-metrics", action="store_true", help="do not scrape /metrics")
    ap.add_argument("--label", default=None, help="free-form label copied into the JSON")
    ap.add_argument("--tag", action="append", default=[], metavar="K=V",
                    help="tag copied into the JSON's 'tags' (load.sh: clip=, max_batch=; used by `table`)")
    ap.add_argument("--json", default=None, help="write the report as JSON here ('-' = stdout)")
    ap.add_argument("--quiet", action="store_true", help="no human table")
    args = ap.parse_args(argv)
    if args.concurrency < 1 or args.duration <= 0:
        ap.error("--concurrency must be >= 1 and --duration > 0")
    args.url = args.url.rstrip("/")
    target = urllib.parse.urlsplit(args.url)
    if target.scheme not in ("http", "https") or not target.hostname:
        ap.error("--url must be http://host:port")
    args.path_ = (target.path.rstrip("/") if target.path else "") + args.path
    metrics_urls = [] if args.no_metrics else (args.metrics_url or ["%s://%s/metrics" % (target.scheme,
                                                                                          target.netloc)])

    fields = [("model", args.model), ("response_format", args.response_format)]
    if args.temperature is not None:
        fields.append(("temperature", args.temperature))
    if args.language is not None:
        fields.append(("language", args.language))
    for kv in args.field:
        k, _, v = kv.partition("=")
        fields.append((k, v))
    try:
        uploads = [Upload(p, fields) for p in args.file]
    except OSError as e:
        ap.error(str(e))

    m_before = scrape(metrics_urls[0], args.api_key) if metrics_urls else None
    if metrics_urls and m_before is None:
        metrics_urls = []  # no /metrics there: skip the gauges rather than hammer a 404
    sampler = Sampler(args.server_pid, metrics_urls, args.api_key) if (args.server_pid or metrics_urls) else None
    results, lock = [], threading.Lock()
    t_start = time.monotonic()
    t_deadline = t_start + args.duration
    if sampler is not None:
        sampler.t_start = t_start
        sampler.start()
    abandon = threading.Event()
    clients = [Client(i, args, target, uploads, t_deadline, results, lock, abandon)
               for i in range(args.concurrency)]
    for c in clients:
        c.start()
    give_up_at = t_deadline + args.max_drain if args.max_drain is not None else None
    try:
        for c in clients:
            while c.is_alive():
                c.join(0.25)
                if give_up_at is not None and time.monotonic() >= give_up_at and not abandon.is_set():
                    abandon.set()
                    for cc in clients:
                        cc.give_up()
    except KeyboardInterrupt:
        print("interrupted: reporting what finished", file=sys.stderr)
    t_end = time.monotonic()
    if sampler is not None:
        sampler.stop()
    m_after = scrape(metrics_urls[0], args.api_key) if metrics_urls else None
    with lock:
        done = list(results)
    rep = summarize(args, uploads, done, t_start, t_deadline, t_end, sampler, m_before, m_after)
    if not args.quiet:
        print_report(rep)
    if args.json:
        text = json.dumps(rep, indent=1)
        if args.json == "-":
            print(text)
        else:
            with open(args.json, "w") as f:
                f.write(text + "\n")
    return 0 if rep["ok"] > 0 and rep["errors"] == 0 and rep["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
