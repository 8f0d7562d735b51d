"""``dbnet serve`` under load: requests/s and latency for 1, 8 and 32 concurrent clients, against
``dbnet detect`` on the same images in the same run (the service's overhead per image).

    python bench/bench_serve.py [--images DIR] [--weights general] [--requests 16] [--clients 1,8,32]
                                [--rounds 3] [--loops 4] [--no-compare]
    python bench/bench_serve.py --targets [...]   (the operator's targets: bench/bench_serve_targets.py)

Loopback only, bounded request counts. The server is the real one (``python -m dbcli.cli serve``,
a process of its own on a free 127.0.0.1 port, ``--max-queue 64`` so that no client is turned
away); each client is a thread with its own keep-alive connection sending the images of ``--images``
(default: the four photos in ``examples/``) in turn as raw request bodies, one image per request,
until ``max(--requests, 2 x clients)`` requests are answered. Per level: requests/s (= images/s),
errors (any answer but 200), p50 / p99 latency (send to last byte) and the server's peak RSS so far.

Contenders, INTERLEAVED: each of ``--rounds`` rounds runs every contender once, in the order
below, so that a machine that gets busier or quieter affects all alike; images/s is the median over
the rounds, latencies are pooled over them. Only one contender works at a time (the others idle).
- ``dbnet detect``: ``dbcli.detect.detect`` (what the command runs after loading the model: inputs
  expanded, the engine, JSON written) in this process over ``--loops`` copies of the images, in the
  main thread as the command runs it, and the same call in another thread, as the server's worker
  runs the engine (on a heavily loaded machine the two differ: see bench/README.md);
- the service as it runs on a CPU by default (``--max-batch 1``: every request its own engine call)
  at each client count;
- a second server with ``--max-batch 8`` (up to 8 images of concurrent requests in one engine call,
  the CUDA default) at the client counts above 1: what the micro-batching brings on this machine
  (skipped with ``--no-compare``).
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import common  # noqa: F401  (puts the repository root on sys.path)
import numpy as np
from bench.common import ROOT, header, load_average, print_table

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "DBNET_PROGRESS": "0"}


def start_server(weights: str, max_batch: int, log: Path, extra: tuple[str, ...] = (),
                 more_env: dict | None = None) -> tuple[subprocess.Popen, int]:
    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "dbcli.cli", "serve", "--weights", weights, "--device", "cpu",
                                 "--port", str(port), "--max-queue", "64", "--max-batch", str(max_batch), *extra],
                                stdout=out, stderr=subprocess.STDOUT, env={**env(), **(more_env or {})}, cwd=ROOT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"dbnet serve exited:\n{log.read_text()}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return proc, port
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("dbnet serve did not start")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def load(port: int, images: list[tuple[str, bytes]], clients: int, requests: int) -> dict:
    """``requests`` requests from ``clients`` threads; latencies (s), errors, wall seconds."""
    latencies: list[float] = []
    errors: list[str] = []
    counter = iter(range(requests))
    lock = threading.Lock()

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        while True:
            with lock:
                k = next(counter, None)
            if k is None:
                break
            name, data = images[k % len(images)]
            t0 = time.perf_counter()
            try:
                conn.request("POST", f"/detect?filename={name}", data, {"Content-Type": "application/octet-stream"})
                response = conn.getresponse()
                body = response.read()
                status = response.status
            except (OSError, http.client.HTTPException) as exc:
                status, body = 0, str(exc).encode()
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
            elapsed = time.perf_counter() - t0
            with lock:
                latencies.append(elapsed)
                if status != 200:
                    errors.append(f"{status}: {body[:200]!r}")
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"latencies": latencies, "errors": errors, "wall": time.perf_counter() - start}


def main() -> None:
    if "--targets" in sys.argv:
        from bench_serve_targets import main as targets

        sys.argv.remove("--targets")
        targets()
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, default=ROOT / "examples")
    parser.add_argument("--weights", default="general")
    parser.add_argument("--requests", type=int, default=16, help="requests per level and round (at least 1 per client)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--loops", type=int, default=4, help="copies of the images dbnet detect runs over")
    parser.add_argument("--no-compare", action="store_true", help="skip the --max-batch 8 server")
    args = parser.parse_args()
    levels = [int(c) for c in args.clients.split(",")]
    files = sorted(p for p in args.images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SystemExit(f"{args.images}: no images")
    images = [(p.name, p.read_bytes()) for p in files]

    header("dbnet serve under load vs dbnet detect (bench/bench_serve.py)")
    print(f"# images: {', '.join(p.name for p in files)}; loopback; requests per level and round: "
          f"max({args.requests}, clients); {args.rounds} rounds, interleaved")
    from rich.console import Console

    from dbcli.cpu import tune_malloc
    from dbcli.engine.load import load as load_model_and_settings
    from dbcli.engine.options import InferenceOptions
    from dbcli.workflows.detect import detect_files as detect

    tune_malloc()
    model, settings = load_model_and_settings(InferenceOptions(weights=args.weights, device="cpu"))
    quiet = Console(quiet=True)
    servers = [("serve (CPU default: --max-batch 1)", 1, levels)]
    if not args.no_compare:
        servers.append(("serve, --max-batch 8", 8, [c for c in levels if c > 1]))
    cli_rates: list[float] = []
    thread_rates: list[float] = []  # the same call in a thread that is not the main one, as the server's worker
    measured: dict[tuple[str, int], dict] = {}
    running: list[tuple[str, subprocess.Popen, int, list[int]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        copies = work / "copies"
        copies.mkdir()
        for loop in range(args.loops):
            for p in files:
                (copies / f"{loop:02d}_{p.name}").symlink_to(p.resolve())
        try:
            for name, max_batch, counts in servers:
                proc, port = start_server(args.weights, max_batch, work / f"server{max_batch}.log")
                running.append((name, proc, port, counts))
                load(port, images, 2, 2 * len(images))  # warm-up: the first calls allocate
            detect([str(copies)], work / "warm.json", "json", model, settings, console=quiet, out_console=quiet)
            def run_detect() -> float:
                t0 = time.perf_counter()
                summary = detect([str(copies)], work / "cli.json", "json", model, settings, console=quiet,
                                 out_console=quiet)
                return summary.images / (time.perf_counter() - t0)

            for _ in range(args.rounds):
                cli_rates.append(run_detect())
                box: list[float] = []
                thread = threading.Thread(target=lambda: box.append(run_detect()))
                thread.start()
                thread.join()
                thread_rates.append(box[0])
                for name, proc, port, counts in running:
                    for clients in counts:
                        r = load(port, images, clients, max(args.requests, clients))
                        m = measured.setdefault((name, clients), {"latencies": [], "errors": [], "rates": []})
                        m["latencies"] += r["latencies"]
                        m["errors"] += r["errors"]
                        m["rates"].append(len(r["latencies"]) / r["wall"])
                        m["rss"] = peak_rss_mb(proc.pid)
        finally:
            for _, proc, _, _ in running:
                proc.terminate()
                proc.wait(60)
    base = float(np.median(cli_rates))
    first = measured.get((servers[0][0], 1))
    single_p50 = float(np.percentile(first["latencies"], 50)) * 1000 if first else None
    rows: list[list[object]] = [[f"dbnet detect ({args.loops} x {len(files)} images)", "-",
                                 args.rounds * args.loops * len(files), 0, f"{base:.2f}", "1.00",
                                 f"{1000 / base:.0f} / image", "-", "-", "-"]]
    in_thread = float(np.median(thread_rates))
    rows.append(["dbnet detect, in a worker thread", "-", args.rounds * args.loops * len(files), 0,
                 f"{in_thread:.2f}", f"{in_thread / base:.2f}", f"{1000 / in_thread:.0f} / image", "-", "-", "-"])
    for (name, clients), m in measured.items():
        lat = np.asarray(m["latencies"]) * 1000
        rate = float(np.median(m["rates"]))
        p50, p99 = np.percentile(lat, 50), np.percentile(lat, 99)
        rows.append([name, clients, len(lat), len(m["errors"]), f"{rate:.2f}", f"{rate / base:.2f}",
                     f"{p50:.0f}", f"{p99:.0f}", f"{p99 / single_p50:.1f}" if single_p50 else "-", f"{m['rss']:.0f}"])
        for line in m["errors"][:3]:
            print(f"# error at {clients} clients: {line}")
    notes = [f"dbnet detect per round: {', '.join(f'{r:.2f}' for r in cli_rates)} images/s; in a worker thread: "
             f"{', '.join(f'{r:.2f}' for r in thread_rates)}; "
             f"machine load at the end: {load_average() or 0:.1f}.",
             "Targets at 8 clients: images/s >= 0.90 x dbnet detect's; p99 < 2 x the single-client p50."]
    print_table("dbnet serve vs dbnet detect, the same images", ["contender", "clients", "requests", "errors",
                "images/s", "vs detect", "p50 ms", "p99 ms", "p99 / 1-client p50", "peak RSS MB"], rows, notes)


if __name__ == "__main__":
    main()
