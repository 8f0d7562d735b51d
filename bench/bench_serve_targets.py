"""``dbnet serve`` against the operator's targets (issue 34), loopback, bounded:

    python bench/bench_serve.py --targets [--image examples/street_sign.jpg] [--weights general]
                                          [--max-wait 2] [--drain-timeout 3] [--overload 3.0] [--arrivals 90]

1. one client, sequential: the service time S (p50) and the capacity 1/S requests/s;
2. a flood: 200 idle connections and 20 uploads of 45 MB declared, held open before their last byte:
   ``/readyz`` latency (target < 100 ms) and a normal request's status and latency;
3. open loop (Poisson arrivals, seeded) at 50% of capacity: p50 / S (target <= 1.5);
4. open loop at ``--overload`` x capacity: every admitted request answered within max-wait + S,
   every other one a 503 in < 50 ms, 0 other answers; the server's peak RSS;
5. after the overload: the latency of requests sent one after another (target: back to normal,
   <= 1.5 S, within 2 S of the overload's end);
6. SIGTERM during another overload: exit within drain-timeout + 2 s, no 500, no upload folder left.
"""

from __future__ import annotations

import argparse
import http.client
import socket
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from bench_serve import peak_rss_mb, start_server
from common import ROOT, header, load_average, print_table

EXPIRED = 1503  # a 503 after waiting in the queue (past --max-wait), told apart from one at once


def post(port: int, data: bytes, name: str, timeout: float = 120) -> tuple[int, float]:
    """(status, seconds) of one POST /detect on a new connection; status 0: no HTTP answer (refused or
    reset), ``EXPIRED``: a 503 whose message says it waited past max-wait."""
    t0 = time.perf_counter()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        conn.request("POST", f"/detect?filename={name}", data, {"Content-Type": "application/octet-stream"})
        response = conn.getresponse()
        body = response.read()
        status = EXPIRED if response.status == 503 and b"waited longer" in body else response.status
        conn.close()
    except (OSError, http.client.HTTPException):
        status = 0
    return status, time.perf_counter() - t0


def get(port: int, path: str) -> tuple[int, float]:
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", path)
    response = conn.getresponse()
    response.read()
    conn.close()
    return response.status, time.perf_counter() - t0


def arrival_times(rate: float, arrivals: int, start: float, seed: int = 0) -> np.ndarray:
    """``arrivals`` Poisson arrival times (``time.perf_counter()`` seconds) of mean ``rate`` per second."""
    return start + np.cumsum(np.random.default_rng(seed).exponential(1 / rate, arrivals))


def open_loop(port: int, data: bytes, name: str, rate: float, arrivals: int, seed: int = 0,
              times: np.ndarray | None = None) -> list[tuple[int, float]]:
    """``arrivals`` requests at Poisson times (or ``times``), each on its own connection."""
    if times is None:
        times = arrival_times(rate, arrivals, time.perf_counter() + 0.05, seed)

    def one(at: float) -> tuple[int, float]:
        time.sleep(max(0.0, at - time.perf_counter()))
        return post(port, data, name)

    with ThreadPoolExecutor(min(256, len(times))) as pool:
        return list(pool.map(one, times))


def flood(port: int, data: bytes, name: str) -> dict:
    """200 idle connections + 20 held uploads of 45 MB declared: /readyz and a normal request."""
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(200)]
    held = []
    for _ in range(20):
        conn = socket.create_connection(("127.0.0.1", port))
        conn.sendall(b"POST /detect HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
                     b"Content-Length: 45000000\r\n\r\n" + b"\0" * 65536)
        held.append(conn)
    time.sleep(0.5)
    try:
        ready = [get(port, "/readyz") for _ in range(5)]
        status, seconds = post(port, data, name)
    finally:
        for conn in idle + held:
            conn.close()
    return {"readyz_status": sorted({s for s, _ in ready}), "readyz_max_ms": max(t for _, t in ready) * 1000,
            "request_status": status, "request_ms": seconds * 1000}


def recovery(port: int, data: bytes, name: str, service: float, start: float, limit: float = 30) -> float:
    """Requests one after another from ``start`` (perf_counter seconds): the seconds from ``start`` to
    the sending of the first one answered 200 within 1.5 x ``service``."""
    time.sleep(max(0.0, start - time.perf_counter()))
    while time.perf_counter() - start < limit:
        sent = time.perf_counter()
        status, seconds = post(port, data, name)
        if status == 200 and seconds <= 1.5 * service:
            return sent - start
    return float("inf")


def sigterm_run(args: argparse.Namespace, data: bytes, name: str, rate: float, work: Path) -> dict:
    spool = work / "spool"
    spool.mkdir()
    proc, port = start_server(args.weights, 1, work / "sigterm.log", extra=server_args(args),
                              more_env={"TMPDIR": str(spool)})
    post(port, data, name)
    results: list = []
    runner = threading.Thread(target=lambda: results.extend(open_loop(port, data, name, rate, args.arrivals, seed=1)))
    runner.start()
    time.sleep(2.0)
    t0 = time.perf_counter()
    proc.terminate()
    proc.wait(120)
    exit_s = time.perf_counter() - t0
    runner.join()
    statuses = [503 if s == EXPIRED else s for s, _ in results]
    left = [p for p in (spool / "dbnet-serve").rglob("*")] if (spool / "dbnet-serve").exists() else []
    return {"exit_s": exit_s, "code": proc.returncode, "500s": statuses.count(500),
            "statuses": {s: statuses.count(s) for s in sorted(set(statuses))}, "left": len(left),
            "traceback": "Traceback" in (work / "sigterm.log").read_text()}


def server_args(args: argparse.Namespace) -> tuple[str, ...]:
    return ("--max-wait", str(args.max_wait), "--drain-timeout", str(args.drain_timeout))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", type=Path, default=ROOT / "examples" / "street_sign.jpg")
    parser.add_argument("--weights", default="general")
    parser.add_argument("--max-wait", type=float, default=2.0)
    parser.add_argument("--drain-timeout", type=float, default=3.0)
    parser.add_argument("--overload", type=float, default=3.0, help="arrival rate / capacity")
    parser.add_argument("--arrivals", type=int, default=90)
    args = parser.parse_args()
    data, name = args.image.read_bytes(), args.image.name
    header("dbnet serve: the operator's targets (bench/bench_serve.py --targets)")
    print(f"# image: {name}; loopback; --max-wait {args.max_wait:g} --drain-timeout {args.drain_timeout:g}; "
          f"load average at the start: {load_average() or 0:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        proc, port = start_server(args.weights, 1, work / "server.log", extra=server_args(args))
        try:
            rows, notes = measure(args, port, data, name, proc)
        finally:
            proc.terminate()
            proc.wait(60)
        capacity = 1 / float(notes.pop())
        stop = sigterm_run(args, data, name, args.overload * capacity, work)
    rows.append(["SIGTERM during the overload: exit s / statuses (0: connection refused once it stopped "
                 "listening) / folders left",
                 f"{stop['exit_s']:.2f} (code {stop['code']}) / {stop['statuses']} / {stop['left']}",
                 f"<= {args.drain_timeout + 2:g} s, no 500, 0 left",
                 "yes" if stop["exit_s"] <= args.drain_timeout + 2 and not stop["500s"] and not stop["left"]
                 and not stop["traceback"] else "NO"])
    notes.append(f"load average at the end: {load_average() or 0:.1f} (2 cores shared with other work).")
    print_table("dbnet serve against the operator's targets", ["measure", "figure", "target", "met"], rows, notes)


def measure(args: argparse.Namespace, port: int, data: bytes, name: str, proc) -> tuple[list, list]:
    for _ in range(3):
        post(port, data, name)  # warm-up
    single = [post(port, data, name)[1] for _ in range(8)]
    service = float(np.median(single))
    capacity = 1 / service
    rows: list[list[object]] = [["single client: p50 service time S", f"{service * 1000:.0f} ms", "-", "-"]]
    f = flood(port, data, name)
    rows.append(["200 idle + 20 held uploads: /readyz max latency (status)",
                 f"{f['readyz_max_ms']:.1f} ms ({f['readyz_status']})", "< 100 ms",
                 "yes" if f["readyz_max_ms"] < 100 and f["readyz_status"] == [200] else "NO"])
    rows.append(["... a normal request meanwhile", f"{f['request_status']} in {f['request_ms']:.0f} ms", "200",
                 "yes" if f["request_status"] == 200 else "NO"])
    half = open_loop(port, data, name, 0.5 * capacity, max(12, args.arrivals // 3))
    p50 = float(np.median([t for s, t in half if s == 200]))
    rows.append(["open loop at 50% of capacity: p50 / S", f"{p50 / service:.2f} ({p50 * 1000:.0f} ms)", "<= 1.5",
                 "yes" if p50 / service <= 1.5 and all(s == 200 for s, _ in half) else "NO"])
    times = arrival_times(args.overload * capacity, args.arrivals, time.perf_counter() + 0.05)
    back: list[float] = []  # the recovery probe starts at the overload's last arrival
    probe = threading.Thread(target=lambda: back.append(recovery(port, data, name, service, float(times[-1]))))
    probe.start()
    over = open_loop(port, data, name, 0, 0, times=times)
    probe.join()
    ok = [t for s, t in over if s == 200]
    busy = [t for s, t in over if s == 503]
    expired = [t for s, t in over if s == EXPIRED]
    other = [s for s, _ in over if s not in (200, 503, EXPIRED)]
    bound = args.max_wait + service
    rows.append([f"open loop at {args.overload:g}x capacity ({args.arrivals} arrivals): answered 200, max latency",
                 f"{len(ok)}, {max(ok) * 1000:.0f} ms" if ok else "0", f"<= max-wait + S = {bound * 1000:.0f} ms",
                 "yes" if ok and max(ok) <= bound else "NO"])
    rows.append(["... admitted, then 503 at max-wait (the pace estimate was short), max latency",
                 f"{len(expired)}, {max(expired) * 1000:.0f} ms" if expired else "0", f"<= {bound * 1000:.0f} ms",
                 "yes" if not expired or max(expired) <= bound else "NO"])
    rows.append(["... refused at once (503): count, p50 / max latency",
                 f"{len(busy)}, {np.median(busy) * 1000:.1f} / {max(busy) * 1000:.1f} ms" if busy else "0",
                 "< 50 ms", "yes" if not busy or max(busy) < 0.05 else "NO"])
    rows.append(["... other answers (errors)", str(len(other)), "0", "yes" if not other else "NO"])
    rows.append(["... server peak RSS", f"{peak_rss_mb(proc.pid):.0f} MB", "bounded", "-"])
    backlog = max(float(t) + lat for t, (_, lat) in zip(times, over)) - float(times[-1])
    after = max(0.0, back[0] - backlog)
    rows.append(["after the overload's last arrival: requests sent one after another back to <= 1.5 S after",
                 f"{back[0] * 1000:.0f} ms ({back[0] / service:.1f} S)", "-", "-"])
    rows.append([f"... after its backlog was answered ({backlog * 1000:.0f} ms after the last arrival, <= max-wait)",
                 f"{after * 1000:.0f} ms ({after / service:.1f} S)", "<= 2 S", "yes" if after <= 2 * service else "NO"])
    return rows, [f"capacity: {capacity:.2f} requests/s (1 / S)", str(service)]


if __name__ == "__main__":
    main()
