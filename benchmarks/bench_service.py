"""Load test of `gradlab serve` (issue 14), localhost only and bounded: N runs from C concurrent clients.

Starts the real server (a temporary SQLite database, an ephemeral port on 127.0.0.1), has C client
threads submit N one-spec runs between them (the shipped small specs, round robin) and poll each to
its end, while a prober lists runs every 50 ms. Then checks that every run finished, none was lost
or duplicated, and reports the API's latency while the workers were busy and the throughput in
specs per second, against `gradlab check` of the same N specs in one process.

    .venv/bin/python benchmarks/bench_service.py                 # 200 runs, 20 clients, workers = cores
    .venv/bin/python benchmarks/bench_service.py --runs 40 --clients 8 --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "specs").glob("*.yaml"))


def call(url: str, method: str = "GET", body: dict | None = None) -> tuple[int, dict, float, dict]:
    """(status, JSON, seconds, headers) of one request."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"} if data else {})
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, text, headers = response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        status, text, headers = exc.code, exc.read(), dict(exc.headers)
    return status, json.loads(text), time.perf_counter() - t0, headers


def start_server(folder: Path, workers: int) -> tuple[subprocess.Popen, str]:
    log = folder / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gradlab", "serve", "--port", "0", "--db", f"sqlite:///{folder / 'bench.db'}",
                                 "--workers", str(workers)], stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=folder,
                                env={**os.environ, "GRADLAB_NO_SUPERVISOR": "1"})  # the pid is the web process itself
    for _ in range(600):
        found = re.search(r"gradlab serve: (http://\S+)", log.read_text())
        if found:
            try:
                call(found.group(1) + "/api/runs?limit=1")
                return proc, found.group(1)
            except OSError:
                pass
        time.sleep(0.1)
    raise SystemExit(f"the server did not start:\n{log.read_text()}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process itself has used so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def group_cpu_seconds(pgid: int) -> float:
    """CPU seconds of every live process in the server's process group, with the children each has reaped (the
    forkserver's workers, the store process): the whole server's cost."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            total += sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    return total


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def run_clients(url: str, shares: list[list[Path]], texts: dict[Path, str]) -> tuple[dict[str, list[float]], list[int], int]:
    """Each share by a thread of its own: submit each spec as a one-spec run, then poll it to its end."""
    latencies: dict[str, list[float]] = {"POST /api/runs": [], "  first POST of a client": [], "  later POSTs": [],
                                         "GET /api/runs/{id}": []}
    ids: list[int] = []
    retries_429 = [0]
    lock = threading.Lock()

    def client(mine: list[Path]) -> None:
        for path in mine:
            while True:
                status, answer, seconds, headers = call(url + "/api/runs", "POST", {"specs": [{"name": path.name, "yaml": texts[path]}]})
                with lock:
                    latencies["POST /api/runs"].append(seconds)
                    latencies["  first POST of a client" if path is mine[0] else "  later POSTs"].append(seconds)
                if status != 429:
                    break
                with lock:
                    retries_429[0] += 1
                time.sleep(float(headers.get("Retry-After", 1)))
            assert status == 202, answer
            with lock:
                ids.append(answer["id"])
            pause = 0.1
            while True:  # polled as `gradlab check --remote` polls: 0.1 s, then 1.5x longer each time, at most 1 s
                status, run, seconds, _ = call(f"{url}/api/runs/{answer['id']}")
                with lock:
                    latencies["GET /api/runs/{id}"].append(seconds)
                if run["status"] not in ("queued", "running"):
                    break
                time.sleep(pause)
                pause = min(1.0, pause * 1.5)

    threads = [threading.Thread(target=client, args=(share,)) for share in shares]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, ids, retries_429[0]


def probe(url: str, busy) -> list[float]:
    """List the newest runs every 50 ms while `busy` is set: what a user watching the UI waits for."""
    seconds = []
    while busy.is_set():
        seconds.append(call(url + "/api/runs?limit=20")[2])
        time.sleep(0.05)
    return seconds


def load_from_threads(url: str, shares, texts) -> tuple[dict[str, list[float]], list[int], int, float]:
    """Every client and the prober a thread of this one process (the old way: they share its GIL)."""
    t0 = time.perf_counter()
    busy = threading.Event()
    busy.set()
    probed: list[float] = []
    prober = threading.Thread(target=lambda: probed.extend(probe(url, busy)))
    prober.start()
    latencies, ids, retries = run_clients(url, shares, texts)
    busy.clear()
    prober.join()
    return {**latencies, "GET /api/runs (prober)": probed}, ids, retries, t0


def _spawned(_) -> int:
    time.sleep(0.3)  # holds its process, so that the pool starts every one of them
    return os.getpid()


def load_from_processes(url: str, shares, texts, processes: int) -> tuple[dict[str, list[float]], list[int], int, float]:
    """The clients spread over `processes` processes and the prober in one more, so that what is timed is the
    server, not the clients' wait for one GIL. The processes are started (a fresh interpreter each, importing this
    module) before the clock starts: until 2026-12 their start-up overlapped the first requests and was timed."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, ProcessPoolExecutor(processes + 1, mp_context=context) as pool:
        busy = manager.Event()
        busy.set()
        list(pool.map(_spawned, range(processes + 1)))
        t0 = time.perf_counter()
        prober = pool.submit(probe, url, busy)
        groups = [pool.submit(run_clients, url, shares[i::processes], texts) for i in range(processes)]
        latencies: dict[str, list[float]] = {}
        ids: list[int] = []
        retries = 0
        for group in groups:
            found, mine, retried = group.result()
            for name, values in found.items():
                latencies.setdefault(name, []).extend(values)
            ids += mine
            retries += retried
        busy.clear()
        return {**latencies, "GET /api/runs (prober)": prober.result()}, ids, retries, t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--client-processes", type=int, default=4,
                        help="client processes the clients are spread over, the prober in one more (0: every client a thread of "
                             "this process, as before: they then contend for its GIL and the latencies include that wait)")
    args = parser.parse_args()

    chosen = [SPECS[i % len(SPECS)] for i in range(args.runs)]
    texts = {p: p.read_text() for p in SPECS}
    folder = Path(tempfile.mkdtemp(prefix="gradlab-bench-"))
    proc, url = start_server(folder, args.workers)
    load_before = os.getloadavg()
    shares = [chosen[i::args.clients] for i in range(args.clients)]
    if args.client_processes:
        latencies, ids, retries_429, t0 = load_from_processes(url, shares, texts, args.client_processes)
    else:
        latencies, ids, retries_429, t0 = load_from_threads(url, shares, texts)
    served_s = time.perf_counter() - t0

    runs = call(url + "/api/runs?limit=1000")[1]["runs"]
    statuses = {}
    for r in runs:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    details = [call(f"{url}/api/runs/{i}")[1] for i in ids]
    names_ok = all(d["result"] and [s["spec"] for s in d["result"]["specs"]] == d["specs"] for d in details)
    web_cpu = cpu_seconds(proc.pid)
    server_cpu = group_cpu_seconds(proc.pid)
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(30)

    t1 = time.perf_counter()
    local = subprocess.run([sys.executable, "-m", "gradlab", "check", "-q", *map(str, chosen)], capture_output=True, text=True)
    local_s = time.perf_counter() - t1
    t2 = time.perf_counter()  # one spec: the command's start-up (imports), which the 200-spec figure includes and the service's does not
    subprocess.run([sys.executable, "-m", "gradlab", "check", "-q", str(chosen[0])], capture_output=True, text=True)
    start_s = time.perf_counter() - t2
    steady = (args.runs - 1) / max(local_s - start_s, 1e-9)

    print(f"machine: {os.cpu_count()} cores; server: {args.workers} local workers, SQLite; {args.runs} one-spec runs "
          f"({len(SPECS)} shipped specs round robin) from {args.clients} concurrent clients "
          + (f"in {args.client_processes} processes, the prober in its own" if args.client_processes else "as threads of one process"))
    print(f"runs submitted {len(ids)}, distinct ids {len(set(ids))}, runs in the database {len(runs)}, statuses {statuses}, "
          f"each result names its spec: {names_ok}; 429 answers (retried) {retries_429}")
    print(f"{'endpoint':24} {'requests':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for name, values in latencies.items():
        ms = [v * 1000 for v in values]
        print(f"{name:24} {len(ms):>8} {statistics.median(ms):>8.1f} {percentile(ms, 99):>8.1f} {max(ms):>8.1f}")
    everything = [v * 1000 for name, values in latencies.items() if not name.startswith(" ") for v in values]
    print(f"{'all API calls':24} {len(everything):>8} {statistics.median(everything):>8.1f} {percentile(everything, 99):>8.1f} {max(everything):>8.1f}")
    print(f"web process CPU: {web_cpu:.1f} s over the run ({web_cpu / served_s:.0%} of one core); the whole server "
          f"(web, workers, store process): {server_cpu:.1f} s")
    print(f"throughput: service {args.runs / served_s:.2f} specs/s ({served_s:.1f} s, submit to last result); "
          f"`gradlab check` of the same {args.runs} specs in one process {args.runs / local_s:.2f} specs/s ({local_s:.1f} s, exit {local.returncode}); "
          f"ratio {local_s / served_s:.0%}")
    print(f"in one process without its start-up ({start_s:.1f} s for one spec): {steady:.2f} specs/s; ratio {args.runs / served_s / steady:.0%}")
    print(f"load average (1, 5, 15 min) when the clients started {', '.join(f'{x:.2f}' for x in load_before)}; at the end "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
