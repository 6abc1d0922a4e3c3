#!/usr/bin/env python3
"""Load on `kgflow serve`: requests/s and latency at several concurrencies, server memory, and a
flood of bad requests the server must survive.

    python benchmarks/serve.py RUN_DIR [--clients 1 8 32] [--seconds 20] [--workers 1]
                                       [--bad 10000] [--label NAME] [--results FILE]

The server runs in its own process (``kgflow serve RUN_DIR`` on 127.0.0.1); the clients are
threads of this process, each with one keep-alive HTTP connection, sending POST /recommend for
users drawn at random (seeded) from the run, k=10, back to back for ``--seconds``. Latency is
measured per request on the client (send to last byte). After the load, ``--bad`` malformed or
invalid requests (unknown users and items, k out of range, wrong types, broken JSON, unknown
fields) are sent; every one must get a 4xx JSON error and /health must still answer. Memory is the
server's resident set (all its processes) after loading and after the whole benchmark.
The clients share the machine with the server: on a small machine they take CPU from it.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (uvicorn's workers), in MB."""
    import psutil

    process = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)]) / 2**20


def post(conn: http.client.HTTPConnection, path: str, body: bytes) -> tuple[int, bytes]:
    conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    return response.status, response.read()


def wait_ready(port: int, server: subprocess.Popen, timeout: float = 900) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with code {server.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return time.perf_counter() - start
        except OSError:
            time.sleep(0.25)
    raise RuntimeError("the server did not come up")


def load(port: int, users: list[str], clients: int, seconds: float, path: str = "/recommend",
         make=lambda u: {"user": u, "k": 10}) -> dict:
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    stop = time.perf_counter() + seconds

    def client(n: int) -> None:
        rng = random.Random(n)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while time.perf_counter() < stop:
            body = json.dumps(make(rng.choice(users))).encode()
            t = time.perf_counter()
            status, _ = post(conn, path, body)
            latencies[n].append(time.perf_counter() - t)
            errors[n] += status != 200

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    every = np.concatenate([np.asarray(x) for x in latencies]) * 1000
    return {"clients": clients, "requests": len(every), "errors": sum(errors),
            "req_per_s": len(every) / wall, "p50_ms": float(np.percentile(every, 50)),
            "p99_ms": float(np.percentile(every, 99))}


def bad_requests(users: list[str], n: int) -> list[bytes]:
    """``n`` requests the server must refuse, cycling through every kind of mistake."""
    kinds = [
        lambda i: json.dumps({"user": f"ghost-{i}"}),
        lambda i: json.dumps({"user": users[i % len(users)], "k": 0}),
        lambda i: json.dumps({"user": users[i % len(users)], "k": 10**9}),
        lambda i: json.dumps({"user": users[i % len(users)], "k": "ten"}),
        lambda i: json.dumps({"user": [users[i % len(users)]]}),
        lambda i: json.dumps({"user": users[i % len(users)], "exclude_items": [f"nope-{i}"]}),
        lambda i: json.dumps({"user": users[i % len(users)], "kk": 3}),
        lambda i: '{"user": ' + str(i),
        lambda i: "\xff not json",
        lambda i: json.dumps([1, 2, 3]),
    ]
    return [kinds[i % len(kinds)](i).encode("utf-8", "surrogateescape") for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--bad", type=int, default=10_000)
    ap.add_argument("--label", default=None)
    ap.add_argument("--results", type=Path, default=None, help="append the record as a JSON line")
    args = ap.parse_args()

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "kgflow", "serve", str(args.run_dir), "--port",
                               str(port), "--workers", str(args.workers), "--threads",
                               str(args.threads), "--log-level", "warning"])
    try:
        startup = wait_ready(port, server)
        conn = http.client.HTTPConnection("127.0.0.1", port)
        conn.request("GET", "/info")
        info = json.loads(conn.getresponse().read())
        metrics = json.loads((args.run_dir / "metrics.json").read_text())
        import pandas as pd  # the run's own ids, from its saved data

        ids = pd.read_parquet(args.run_dir / "data" / "ids.parquet")
        users = ids.loc[ids["kind"] == "user", "id"].astype(str).tolist()
        items = ids.loc[ids["kind"] == "item", "id"].astype(str).tolist()
        rng = random.Random(0)
        users = rng.sample(users, min(len(users), 100_000))
        record = {"label": args.label or info["name"], "users": info["users"], "items": info["items"],
                  "workers": args.workers, "threads": args.threads, "startup_s": startup,
                  "rss_loaded_mb": rss_mb(server.pid), "machine": f"{platform.machine()}, "
                  f"{os.cpu_count()} cores", "runs": []}
        load(port, users, 4, 2)  # warm-up
        for clients in args.clients:
            result = load(port, users, clients, args.seconds)
            print(json.dumps(result), flush=True)
            record["runs"].append(result | {"endpoint": "/recommend"})
        for path, make in (("/similar", lambda u: {"item": rng.choice(items), "k": 10}),
                           ("/recommend/new", lambda u: {"liked": rng.sample(items, 5), "k": 10})):
            result = load(port, users, 8, args.seconds / 2, path, make)
            print(path, json.dumps(result), flush=True)
            record["runs"].append(result | {"endpoint": path})
        statuses: dict[int, int] = {}
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        t = time.perf_counter()
        not_json = 0
        for body in bad_requests(users, args.bad):
            status, payload = post(conn, "/recommend", body)
            statuses[status] = statuses.get(status, 0) + 1
            try:
                not_json += "problems" not in json.loads(payload)
            except ValueError:
                not_json += 1
        conn.request("GET", "/health")
        record["bad"] = {"requests": args.bad, "seconds": time.perf_counter() - t,
                         "statuses": {str(k): v for k, v in sorted(statuses.items())},
                         "answers_not_json_errors": not_json,
                         "health_after": conn.getresponse().status}
        conn.close()
        record["rss_end_mb"] = rss_mb(server.pid)
        record["test_ndcg@10"] = metrics["test"]["all"].get("ndcg@10")
        print(json.dumps(record, indent=1))
        if args.results:
            with open(args.results, "a") as fh:
                fh.write(json.dumps(record) + "\n")
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()
