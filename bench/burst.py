"""`python bench/burst.py`: worker memory before and after a burst of large, unique request bodies.

Caches keyed by request content used to keep about one byte per byte of unique input (+97 MB in a worker after
twenty 4 MB bodies, never given back). This starts `cds-service serve` with one worker, warms it with ordinary
calls, reads its resident memory (VmRSS), sends `--bodies` unique bodies of about `--mb` MB each (every date, code
and drug text different, and long), then reads it again, from the worker serving then (one that large calls left
more than CDS_WORKER_MEMORY_HEADROOM_MB larger is replaced by a fresh one); `--bursts` times. It does so three
times in one run: the defaults; replacement off (`CDS_WORKER_MEMORY_HEADROOM_MB=0`), which shows what CPython's
allocator keeps; and replacement off with `PYTHONMALLOC=malloc`, with the worker's CPU time per ordinary call under
each (the price of the last). Two controls say whose memory it is: the Python objects the same burst leaves behind
in-process (tracemalloc), and what CPython keeps after merely decoding the same bodies with `orjson.loads` in a bare
interpreter. Writes bench/BURST.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import orjson
import requests

from cds_service.state import state

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import _body, _worker_peak_rss_mb, _worker_pids, _workers_cpu_seconds, start_server  # noqa: E402

URL = "/cds-services/fbss-miss-advisor"
JSON = {"Content-Type": "application/json"}
TIMED_CALLS = 1000


@dataclass
class Run:
    label: str
    cpu_ms_per_call: float = 0.0
    before: float = 0.0
    after: list[float] = field(default_factory=list)
    peak: float = 0.0
    statuses: set[int] = field(default_factory=set)
    workers: set[int] = field(default_factory=set)
    longest_call: float = 0.0


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _unique_body(size_mb: float) -> bytes:
    """A patient whose conditions carry unique long codes, texts and dates: nothing any cache has seen."""
    tag = uuid.uuid4().hex
    body = orjson.loads(_body(100, "patient-view"))
    conditions = body["prefetch"]["conditions"]["entry"]
    template = conditions[0]["resource"]
    count = int(size_mb * 1024 * 1024 / 1200)
    for index in range(count):
        resource = dict(template, id=f"{tag}-{index}")
        resource["code"] = {"text": f"{tag} oxycodone {index} " + "x" * 600,
                            "coding": [{"system": f"http://example.org/{tag}", "code": f"{tag}{index}" * 4}]}
        resource["onsetDateTime"] = f"2019-05-01T12:34:{index % 60:02d}.{index:06d}+0{index % 9}:00"
        conditions.append({"resource": resource})
    return orjson.dumps(body)


def _the_worker(master: int) -> int:
    """The one worker's pid, once a replaced worker has gone and its successor is up."""
    deadline = time.monotonic() + 30
    while len(pids := _worker_pids(master)) != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    [worker] = pids
    return worker


def burst_over_http(label: str, env: dict[str, str], bodies: list[list[Path]]) -> Run:
    """One gunicorn worker with `env`: CPU per ordinary call, then the worker's resident memory before and after each
    burst of `bodies`, and the workers that served."""
    run = Run(label)
    server, port = start_server(tempfile.mkdtemp(prefix="cds-bench-burst-"), workers=1, extra_env=env)
    base = f"http://127.0.0.1:{port}"
    session = requests.Session()
    ordinary = _body(100, "patient-view")

    def post(data: bytes) -> None:
        started = time.perf_counter()
        run.statuses.add(session.post(base + URL, data=data, headers=JSON, timeout=120).status_code)
        run.longest_call = max(run.longest_call, time.perf_counter() - started)

    def ordinary_calls(count: int) -> None:
        for _ in range(count):
            post(ordinary)

    try:
        ordinary_calls(100)
        worker = _the_worker(server.pid)
        run.workers.add(worker)
        cpu = _workers_cpu_seconds(server.pid)
        ordinary_calls(TIMED_CALLS)
        run.cpu_ms_per_call = (_workers_cpu_seconds(server.pid) - cpu) * 1000 / TIMED_CALLS
        time.sleep(0.5)  # the ledger writer's turn
        run.before = _rss_mb(worker)
        for burst in bodies:
            for path in burst:
                post(path.read_bytes())
                run.workers.update(_worker_pids(server.pid))
            ordinary_calls(50)
            time.sleep(0.5)
            worker = _the_worker(server.pid)
            run.workers.add(worker)
            run.after.append(_rss_mb(worker))
        run.peak = max(_worker_peak_rss_mb(server.pid))
    finally:
        server.terminate()
        server.wait(timeout=60)
    return run


DECODE_ONLY = """
import orjson, re, os, sys
from pathlib import Path
def kept():
    read, write = os.pipe()
    saved = os.dup(2)
    os.dup2(write, 2)
    try:
        sys._debugmallocstats()
    finally:
        os.dup2(saved, 2)
        os.close(write)
    text = os.read(read, 1 << 20).decode()
    arenas = int(re.search(r"arenas allocated current\\s+=\\s+([\\d,]+)", text).group(1).replace(",", ""))
    return arenas
start = kept()
for path in sys.argv[1:]:
    document = orjson.loads(Path(path).read_bytes())
    del document
print(kept() - start)
"""


def decode_only_mb(paths: list[Path]) -> int:
    """CPython's arenas (1 MiB each) kept after decoding the same bodies in a bare interpreter, nothing else alive."""
    result = subprocess.run([sys.executable, "-c", DECODE_ONLY, *map(str, paths)], capture_output=True, text=True,
                            check=True)
    return int(result.stdout.strip())


def retained_python_kb(paths: list[Path]) -> float:
    """In-process: what Python objects a burst leaves behind (tracemalloc), apart from what the allocator keeps."""
    import gc  # noqa: PLC0415
    import logging  # noqa: PLC0415
    import tracemalloc  # noqa: PLC0415

    from cds_service import create_app  # noqa: PLC0415

    logging.disable(logging.WARNING)
    app = create_app({"INSTANCE_PATH": tempfile.mkdtemp(prefix="cds-bench-burst-"), "TESTING": True})
    client = app.test_client()
    ordinary = _body(100, "patient-view")
    for _ in range(30):
        client.post(URL, data=ordinary, content_type="application/json")
    state(app).ledger.flush()
    gc.collect()
    tracemalloc.start()
    start = tracemalloc.get_traced_memory()[0]
    for path in paths:
        client.post(URL, data=path.read_bytes(), content_type="application/json")
    for _ in range(30):
        client.post(URL, data=ordinary, content_type="application/json")
    state(app).ledger.flush()
    gc.collect()
    retained = tracemalloc.get_traced_memory()[0] - start
    tracemalloc.stop()
    state(app).ledger.close()
    return retained / 1024


def _row(run: Run) -> str:
    cells = " | ".join(f"{a:.0f} MB ({a - run.before:+.0f})" for a in run.after)
    return (f"| {run.label} | {run.cpu_ms_per_call:.2f} ms | {run.before:.0f} MB | {cells} | {run.peak:.0f} MB | "
            f"{len(run.workers) - 1} | {run.longest_call:.2f} s |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bodies", type=int, default=20)
    parser.add_argument("--mb", type=float, default=4.0)
    parser.add_argument("--bursts", type=int, default=3, help="bursts in a row: growth must stop, not go on")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="cds-bench-bodies-"))
    bodies = []
    for burst in range(args.bursts):  # written once, sent to both servers: every body unique within a server
        paths = [folder / f"{burst}-{index}.json" for index in range(args.bodies)]
        for path in paths:
            path.write_bytes(_unique_body(args.mb))
        bodies.append(paths)
    never = {"CDS_WORKER_MEMORY_HEADROOM_MB": "0"}
    runs = [burst_over_http("defaults (worker replaced past its headroom)", {}, bodies),
            burst_over_http("never replaced", never, bodies),
            burst_over_http("never replaced, `PYTHONMALLOC=malloc`", {**never, "PYTHONMALLOC": "malloc"}, bodies)]
    decoded_mb = decode_only_mb(bodies[0])
    retained_kb = retained_python_kb(bodies[0])
    default, kept, malloc = runs
    cost = malloc.cpu_ms_per_call / kept.cpu_ms_per_call if kept.cpu_ms_per_call else float("nan")
    statuses = sorted(set().union(*(run.statuses for run in runs)))
    text = "\n".join([
        "# Worker memory around a burst of large unique bodies", "",
        f"Run {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} with `python bench/burst.py` (one gthread worker, "
        f"the defaults): {args.bodies} bodies of about {args.mb:g} MB a burst, every code, text and date unique and "
        f"long, each burst followed by 50 ordinary 100-resource calls; statuses {statuses}. The same bodies go to "
        "three servers: the defaults, under which a worker that large calls left more than "
        "`CDS_WORKER_MEMORY_HEADROOM_MB` (8) larger is replaced; replacement off, which shows what CPython's "
        "allocator keeps; and replacement off with every object from glibc (`PYTHONMALLOC=malloc`). RSS is that "
        "of the worker serving at the time. CPU is the worker's user + system time per ordinary call, over "
        f"{TIMED_CALLS} calls before the bursts; the longest call is the slowest answer of the whole run, seen by a "
        "client sending one call at a time.", "",
        "| server | CPU per ordinary call | RSS before | " + " | ".join(
            f"after burst {i + 1}" for i in range(args.bursts)) + " | peak (VmHWM) | workers replaced | longest call |",
        "|---|---|---|" + "---|" * args.bursts + "---|---|---|",
        *(_row(run) for run in runs), "",
        f"Whose memory it is: the Python objects the same burst leaves behind, in-process (tracemalloc, after a "
        f"collection): {retained_kb:+.0f} KB. Decoding the first burst's bodies with `orjson.loads` alone, in a "
        f"bare interpreter, leaves CPython holding {decoded_mb} more arenas of 1 MiB than before. CPython's "
        "small-object allocator returns an arena to the system only when every object in it is gone, so a few "
        "objects that outlive a large call (a cache entry, a ledger row waiting for its turn, the next call's "
        "objects) keep the pages of the objects freed around them; the worker reuses them for later calls, so the "
        "growth stops rather than adding up, and one call at a time decodes in a worker, so it is at most about "
        "one largest body's worth (`CDS_MAX_BODY_BYTES`), which no trim gives back. glibc's free pages go back after "
        "each body over 1 MB (`malloc_trim`, once the response is sent) with two glibc heaps per worker "
        "(cds_service/memory.py). So by default a worker left more than its headroom larger is replaced "
        f"(cds_service/memory.py `WorkerMemory`): in this run {len(default.workers) - 1} times, ending "
        f"{default.after[-1] - default.before:+.0f} MB from where it started, against "
        f"{kept.after[-1] - kept.before:+.0f} MB never replaced. The last row is the alternative of every object "
        f"from glibc, whose free pages the trim returns one by one: {malloc.after[-1] - malloc.before:+.0f} MB "
        f"after the last burst, for {cost:.2f}x the CPU per ordinary call.", ""])
    if not args.no_write:
        (ROOT / "bench" / "BURST.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
