"""`python bench/silent.py`: what a silent knowledge version costs a call, in one run.

Two apps in one process, as bench/run.py builds them (SQLite ledger on, clock pinned, collector set as in a gunicorn
worker): one without silent mode, one with a silent version (one threshold changed, `CDS_SILENT_KNOWLEDGE`). For
patient-view and order-select at 100 and 2,000 resources, best of several rounds of: the time until the response's
bytes exist (what the client waits for) and the time until the server has closed the response (the silent
evaluation runs then, in the worker's CPU slot: CPU the worker does not spend on the next call). Writes
bench/SILENT.md.
"""

from __future__ import annotations

import argparse
import io
import logging
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from cds_service.state import state

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.generate import ANCHOR  # noqa: E402
from bench.run import SERVICES, _body, settle  # noqa: E402

SIZES = (100, 2000)


def _app(silent: str | None) -> Any:
    from cds_service import create_app  # noqa: PLC0415

    config: dict[str, Any] = {"INSTANCE_PATH": tempfile.mkdtemp(prefix="cds-bench-silent-")}
    if silent:
        config["SILENT_KNOWLEDGE"] = silent
    app = create_app(config)
    state(app).clock = lambda: ANCHOR
    return app


def _timer(app: Any, hook: str, size: int) -> Any:
    from werkzeug.test import EnvironBuilder  # noqa: PLC0415

    body = _body(size, hook)
    environ = EnvironBuilder(path=f"/cds-services/{SERVICES[hook]}", method="POST", data=body,
                             content_type="application/json").get_environ()

    def call() -> tuple[float, float]:
        env = dict(environ)
        env["wsgi.input"] = io.BytesIO(body)
        started = time.perf_counter()
        response = app.wsgi_app(env, lambda status, headers: None)
        b"".join(response)
        answered = time.perf_counter()
        response.close()  # what the server does once the bytes are sent
        return answered - started, time.perf_counter() - started

    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    folder = Path(tempfile.mkdtemp(prefix="cds-bench-silent-version-"))
    (folder / "thresholds.json").write_bytes(orjson.dumps({"PERSISTENT_DAYS": 60}))
    apps = {"live only": _app(None), "with a silent version": _app(str(folder))}
    calls = {(name, hook, size): _timer(app, hook, size) for name, app in apps.items() for hook in SERVICES
             for size in SIZES}
    for call in calls.values():
        for _ in range(20):
            call()
    for app in apps.values():
        settle(app)
    best: dict[tuple[str, str, int], tuple[float, float]] = {}
    for _ in range(args.rounds):
        for key, call in calls.items():
            n = args.calls if key[2] < 1000 else max(20, args.calls // 10)
            times = [call() for _ in range(n)]
            medians = (statistics.median(t[0] for t in times), statistics.median(t[1] for t in times))
            best[key] = min(best.get(key, medians), medians)
        for app in apps.values():
            state(app).ledger.flush()
    rows = []
    for hook in SERVICES:
        for size in SIZES:
            live_answer, live_total = best[("live only", hook, size)]
            answer, total = best[("with a silent version", hook, size)]
            rows.append(f"| {hook} | {size} | {live_answer * 1000:.2f} ms | {answer * 1000:.2f} ms | "
                        f"{answer / live_answer:.2f}x | {live_total * 1000:.2f} ms | {total * 1000:.2f} ms | "
                        f"{total / live_total:.2f}x |")
    text = "\n".join([
        "# What a silent knowledge version costs a call", "",
        f"Run {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} with `python bench/silent.py` (in-process, median "
        f"of {args.calls} calls, best of {args.rounds} rounds; 2,000-resource cases a tenth as many calls). "
        "Answered: until the response's bytes exist, what the client waits for. Closed: until the server has "
        "closed the response, after which the worker takes its next call; the silent evaluation runs in between, "
        "on the data the live call read.", "",
        "| hook | resources | answered, live only | answered, with silent | ratio | closed, live only | "
        "closed, with silent | ratio |",
        "|---|---|---|---|---|---|---|---|",
        *rows, ""])
    if not args.no_write:
        (ROOT / "bench" / "SILENT.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
