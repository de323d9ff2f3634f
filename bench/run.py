"""`make bench`: the service's cost against the cost of parsing its request, measured in one run.

1. In-process (request bytes -> response bytes, through the WSGI app with the collector set as in a gunicorn worker:
   start-up frozen, young generation at 10,000; `orjson.loads` runs under the same settings) for
   patient-view and order-select at 10, 100, 500 and 2,000 resources, next to `orjson.loads` of the same body:
   p50 and p99 of each and their ratio, against the targets (p50 <= 1.5x + 0.5 ms, p99 <= 3x + 2 ms); the best of
   several rounds (`--rounds`), each timing `orjson.loads` and then the service.
2. Over HTTP with the production server setup (gunicorn, 2 gthread workers, 127.0.0.1) with `wrk` at 1 and 8
   connections: requests/s, p50, p99, errors, next to `GET /healthz` in the same run (target at 8 connections with
   100 resources: p99 <= 3x the /healthz p99 + 5 ms, zero errors).
3. Peak resident memory (VmHWM) of each worker after 2,000-resource requests (target <= 200 MB).

Writes bench/RESULTS.md (the plain build) or bench/RESULTS-compiled.md (the release build, `make bench-compiled`)
with machine, versions and date, and prints it. Ratios are what to compare: absolute milliseconds
drift between runs on shared machines.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson

from cds_service.state import state

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.generate import ANCHOR, patient  # noqa: E402

SIZES = (10, 100, 500, 2000)


def _body(size: int, hook: str) -> bytes:
    from cds_service.fhir.prefetch import PATIENT_RECORD  # noqa: PLC0415
    from cds_service.sandbox.search import prefetch_for  # noqa: PLC0415

    resources = patient(size)
    context: dict = {"userId": "Practitioner/bench", "patientId": "bench-1"}
    if hook == "order-select":
        context["draftOrders"] = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {
            "resourceType": "ServiceRequest", "id": "sr-mri", "status": "draft", "intent": "order",
            "subject": {"reference": "Patient/bench-1"},
            "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "72148"}]}}}]}
        context["selections"] = ["ServiceRequest/sr-mri"]
    return orjson.dumps({"hook": hook, "hookInstance": "3f1e2d6a-9d0b-4a8e-9a51-7b3c1d2e4f50", "context": context,
                         "prefetch": prefetch_for(PATIENT_RECORD, context, resources)})


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[max(0, int(len(ordered) * 0.99) - 1)]


def _timed(function: Callable[..., object], *args: object) -> float:
    """Milliseconds one call takes."""
    start = time.perf_counter()
    function(*args)
    return (time.perf_counter() - start) * 1000


SERVICES = {"patient-view": "fbss-miss-advisor", "order-select": "fbss-miss-orders"}


def bench_app() -> Any:
    """The app as the benchmarks run it: defaults (SQLite in a temporary folder, ledger on), the clock pinned, and
    order evaluations never reused: the same body is sent again and again, and each call is to cost what a first call
    costs (bench/order_reuse.py measures the reuse)."""
    from cds_service import create_app  # noqa: PLC0415

    app = create_app({"INSTANCE_PATH": tempfile.mkdtemp(prefix="cds-bench-"), "ORDER_REUSE_SECONDS": 0})
    state(app).clock = lambda: ANCHOR
    return app


def settle(app: Any) -> None:
    """After warm-up: the ledger written, and the collector set as the gunicorn master leaves a worker (start-up
    frozen, young collections rarer: cds_service/server.py), for the service and `orjson.loads` alike."""
    from cds_service.server import freeze_start_up  # noqa: PLC0415

    state(app).ledger.flush()
    freeze_start_up()


def service_call(app: Any, hook: str, size: int) -> tuple[bytes, Callable[[], bytes]]:
    """The request body for a patient of `size` resources, and a function that sends it through the WSGI app and
    returns the response bytes (request bytes to response bytes, no network)."""
    from werkzeug.test import EnvironBuilder  # noqa: PLC0415

    body = _body(size, hook)
    environ = EnvironBuilder(path=f"/cds-services/{SERVICES[hook]}", method="POST", data=body,
                             content_type="application/json").get_environ()

    def call() -> bytes:
        env = dict(environ)
        env["wsgi.input"] = io.BytesIO(body)
        return b"".join(app.wsgi_app(env, lambda status, headers: None))

    return body, call


def in_process(repetitions: int, sizes: tuple[int, ...] = SIZES, rounds: int = 5) -> list[dict]:
    logging.disable(logging.WARNING)
    app = bench_app()
    calls = {}
    for hook in SERVICES:
        for size in sizes:
            body, call = service_call(app, hook, size)
            for _ in range(20):
                call()
            calls[(hook, size)] = (body, call)
    settle(app)
    # Best of several rounds, as performance-notes.md measures. Rounds go over all the cases in turn, so a slow
    # spell of the shared host (they last seconds to minutes here) spoils one round of every case rather than every
    # round of one case.
    seen: dict[tuple[str, int], list[tuple[float, float, float, float]]] = {key: [] for key in calls}
    for _ in range(rounds):
        for (hook, size), (body, call) in calls.items():
            n = max(30, repetitions // (1 if size < 500 else 4 if size == 500 else 10))
            # Each in its own block, one right after the other: alternating them call by call made orjson.loads
            # pay for memory the service had just handed back (up to 2x slower), which flattered the ratio.
            parse = [_timed(orjson.loads, body) for _ in range(n)]
            service = [_timed(call) for _ in range(n)]
            seen[(hook, size)].append((*_percentiles(parse), *_percentiles(service)))
    rows = []
    for (hook, size), (body, _call) in calls.items():
        # Each figure is its best (lowest) round, for parse and service alike, so neither side is picked for luck.
        p50, p99, s50, s99 = (min(values) for values in zip(*seen[(hook, size)], strict=True))
        rows.append({"hook": hook, "size": size, "kb": len(body) // 1024, "parse_p50": p50, "parse_p99": p99,
                     "service_p50": s50, "service_p99": s99, "ratio": s50 / p50,
                     "p50_ok": s50 <= 1.5 * p50 + 0.5, "p99_ok": s99 <= 3 * p99 + 2})
    state(app).ledger.close()
    return rows


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, seconds: float = 30.0) -> None:
    """Until the server accepts connections on 127.0.0.1:`port` (or `seconds` passed)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.2)


def _wrk(url: str, connections: int, seconds: int, body_file: str | None) -> dict:
    script = None
    if body_file:
        script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)  # noqa: SIM115
        script.write(f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                     f'local f = io.open("{body_file}", "rb")\nwrk.body = f:read("*all")\nf:close()\n')
        script.close()
    command = ["wrk", "-t", str(min(connections, 2)), "-c", str(connections), "-d", f"{seconds}s", "--latency", url]
    if script:
        command[1:1] = ["-s", script.name]
    return parse_wrk(subprocess.run(command, capture_output=True, text=True, check=True).stdout)


def parse_wrk(output: str) -> dict:
    """wrk's report: requests/s, requests made, p50 and p99 in ms, errors (non-2xx answers and socket errors)."""

    def latency(label: str) -> float:
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)", output, flags=re.MULTILINE)
        if not match:
            return float("nan")
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)]
        return float(match.group(1)) * scale

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    requests_done = int(re.search(r"(\d+) requests in", output).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    errors = (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, socket_errors.groups())) if socket_errors else 0)
    return {"rps": rps, "requests": requests_done, "p50": latency("50"), "p99": latency("99"), "errors": errors}


def _worker_pids(master_pid: int) -> list[int]:
    """The gunicorn workers: the master's children."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and re.search(rf"^PPid:\s+{master_pid}$", (entry / "status").read_text(),
                                                  flags=re.MULTILINE):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def _workers_cpu_seconds(master_pid: int) -> float:
    """User plus system CPU time of all workers (every thread), from /proc/<pid>/stat. Time the host steals from
    this virtual machine is not in it, so it moves less with the host's load than latency does."""
    ticks = 0
    for pid in _worker_pids(master_pid):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks / os.sysconf("SC_CLK_TCK")


def _worker_peak_rss_mb(master_pid: int) -> list[float]:
    peaks = []
    for pid in _worker_pids(master_pid):
        try:
            match = re.search(r"^VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), flags=re.MULTILINE)
        except OSError:
            continue
        if match:
            peaks.append(int(match.group(1)) / 1024)
    return peaks


def start_server(instance: str, workers: int, extra_env: dict[str, str] | None = None) -> tuple[subprocess.Popen, int]:
    """`cds-service serve` on a free port with the defaults of the environment (no CDS_* setting but the instance
    folder, plus `extra_env`), logging included: one JSON line per request at INFO, written to a discarded stderr.
    Returns once it accepts connections."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    env.update(extra_env or {})
    env["CDS_INSTANCE_PATH"] = instance
    script = Path(sys.executable).with_name("cds-service")
    server = subprocess.Popen([str(script), "serve", "--port", str(port), "--workers", str(workers)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port)
    return server, port


def over_http(seconds: int) -> tuple[list[dict], list[float]]:
    if shutil.which("wrk") is None:
        print("wrk is not installed (Debian package wrk): HTTP figures skipped", file=sys.stderr)
        return [], []
    instance = tempfile.mkdtemp(prefix="cds-bench-http-")
    server, port = start_server(instance, workers=2)
    base = f"http://127.0.0.1:{port}"
    try:
        bodies = {}
        for size in (100, 2000):
            path = Path(instance, f"body-{size}.json")
            path.write_bytes(_body(size, "patient-view"))
            bodies[size] = str(path)
        rows = []
        for connections in (1, 8):
            for name, url, body in (("GET /healthz", f"{base}/healthz", None),
                                    ("patient-view, 100 resources", f"{base}/cds-services/fbss-miss-advisor",
                                     bodies[100])):
                cpu_before = _workers_cpu_seconds(server.pid)
                result = _wrk(url, connections, seconds, body)
                cpu_ms = (_workers_cpu_seconds(server.pid) - cpu_before) * 1000 / max(result["requests"], 1)
                rows.append({"endpoint": name, "connections": connections, "cpu_ms": cpu_ms, **result})
        _wrk(f"{base}/cds-services/fbss-miss-advisor", 2, 5, bodies[2000])  # for the memory peak
        peaks = _worker_peak_rss_mb(server.pid)
        return rows, peaks
    finally:
        server.terminate()
        server.wait(timeout=30)


def _commit() -> str:
    """The commit measured (with `+changes` when the tree differs from it), or `unknown` outside a git checkout."""
    git = shutil.which("git")
    if git is None:
        return "unknown"
    try:
        head = subprocess.run([git, "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run([git, "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}+changes" if dirty else head


def report(process_rows: list[dict], http_rows: list[dict], peaks: list[float], seconds: int) -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    versions = ", ".join(f"{name} {metadata.version(name)}"
                         for name in ("flask", "gunicorn", "orjson", "msgspec", "fhir.resources"))
    from cds_service.compiled import compiled_modules, recorded_sources  # noqa: PLC0415

    record = recorded_sources()
    built = (f"release build: {len(compiled_modules(record))} of the {len(record)} modules setup.py compiles with "
             "mypyc are compiled") if record else \
        "plain build (interpreted; `make bench-compiled` for the release build)"
    lines = [
        "# Benchmark results", "",
        f"Run {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} with `make bench{'-compiled' if record else ''}` on "
        f"{os.cpu_count()} cores "
        f"({cpu}), Python {platform.python_version()}, {versions}; {built}; commit {_commit()}.", "",
        "Patients from `bench/generate.py`: EHR-shaped R4 resources (narrative, meta, identifiers, several codings "
        "per concept; about 1.7 KB each), a few matching the rules among many that do not. The service decodes the "
        "request keeping only the elements it reads (msgspec), so its cost is compared with a full `orjson.loads` of "
        "the same bytes. Absolute times on these shared machines vary by up to 2x between runs; ratios taken in one "
        "run are what to compare. In-process figures are each the best (lowest) of several rounds, for "
        "`orjson.loads` and the service alike, so that a stall of the shared host spoils a round, not the figure.", "",
        "## In-process: request bytes to response bytes, against `orjson.loads` of the same body", "",
        "| hook | resources | body KB | orjson p50 / p99 ms | service p50 / p99 ms | ratio (p50) | p50 target | "
        "p99 target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in process_rows:
        lines.append(f"| {r['hook']} | {r['size']} | {r['kb']} | {r['parse_p50']:.3f} / {r['parse_p99']:.3f} | "
                     f"{r['service_p50']:.3f} / {r['service_p99']:.3f} | {r['ratio']:.1f}x | "
                     f"{'met' if r['p50_ok'] else 'missed'} | {'met' if r['p99_ok'] else 'missed'} |")
    if http_rows:
        lines += ["", f"## Over HTTP: gunicorn, 2 gthread workers, 127.0.0.1, request log at INFO, wrk {seconds} s", "",
                  "| endpoint | connections | requests/s | p50 ms | p99 ms | errors | worker CPU ms per request |",
                  "|---|---|---|---|---|---|---|"]
        for r in http_rows:
            lines.append(f"| {r['endpoint']} | {r['connections']} | {r['rps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} |"
                         f" {r['errors']} | {r['cpu_ms']:.2f} |")
        health = next(r for r in http_rows if r["connections"] == 8 and r["endpoint"].startswith("GET"))
        hook = next(r for r in http_rows if r["connections"] == 8 and not r["endpoint"].startswith("GET"))
        met = hook["p99"] <= 3 * health["p99"] + 5 and hook["errors"] == 0
        lines.append(f"\nTarget at 8 connections (p99 <= 3x /healthz p99 + 5 ms = {3 * health['p99'] + 5:.2f} ms, "
                     f"no errors): {'met' if met else 'missed'}.")
    if peaks:
        lines += ["", f"## Memory: peak RSS per worker after 2,000-resource requests: "
                      f"{', '.join(f'{p:.0f} MB' for p in sorted(peaks))} (target <= 200 MB: "
                      f"{'met' if max(peaks) <= 200 else 'missed'})"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=20, help="wrk duration per measurement (default 20)")
    parser.add_argument("--repetitions", type=int, default=400, help="in-process calls at 100 resources")
    parser.add_argument("--rounds", type=int, default=5,
                        help="in-process rounds per case; each figure reported is its lowest round")
    parser.add_argument("--no-http", action="store_true", help="in-process figures only")
    parser.add_argument("--sizes", type=lambda text: tuple(int(n) for n in text.split(",")), default=SIZES,
                        help="patient sizes for the in-process figures (default 10,100,500,2000)")
    parser.add_argument("--no-write", action="store_true", help="print the table without writing bench/RESULTS*.md")
    args = parser.parse_args()
    process_rows = in_process(args.repetitions, args.sizes, args.rounds)
    http_rows, peaks = ([], []) if args.no_http else over_http(args.seconds)
    text = report(process_rows, http_rows, peaks, args.seconds)
    if not args.no_write:
        from cds_service.compiled import recorded_sources  # noqa: PLC0415

        (ROOT / "bench" / ("RESULTS-compiled.md" if recorded_sources() else "RESULTS.md")).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
