"""Run the app under gunicorn: gthread workers (one per core by default), app preloaded in the master, then frozen.

Threaded workers, because a client that sends its request slowly holds a thread, not the worker: with sync workers two
clients trickling their bodies stopped every other call and /healthz (gunicorn's gthread also waits for a request's
first bytes in its poller, not in a thread). The cost against sync workers is measured in bench/. `--preload` builds
the app (settings, declarations, engine) once before forking, and
`gc.freeze()` moves everything built at start-up out of the garbage collector's view, which removes the p99 spikes of
the collector re-scanning it on every request. The young generation's threshold is then raised (see
`freeze_start_up`).
"""

from __future__ import annotations

import gc
import logging
import signal
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger as GunicornLogger
from prometheus_client import multiprocess

from cds_service import tracing
from cds_service.app import create_app
from cds_service.config import Settings
from cds_service.http import server_errors
from cds_service.logs import json_formatter
from cds_service.memory import limit_malloc_arenas
from cds_service.state import state

log = logging.getLogger(__name__)

GC_YOUNG_THRESHOLD = 10_000
"""Net new container objects between young collections (CPython's default is 700; 3.13 raised it to 2,000)."""


def freeze_start_up() -> None:
    """Everything built so far out of the collector's view (`gc.freeze`), then fewer young collections.

    The decoded prefetch of a 100-resource request is more than 700 container objects, all alive until the response
    is built, so with CPython's default threshold every such request set off a young collection that traced them
    all to free a handful (timed with `gc.callbacks`: bench/DECISIONS.md). All a request leaves to the collector is a
    few small reference cycles (werkzeug's URL matcher makes one, under a kilobyte), so
    collecting ten times less often keeps under a megabyte more between collections.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def retire(worker: Any, resident: int, floor: int, headroom: int) -> None:
    """Stop a worker gracefully from inside it, as SIGTERM does: it takes no new connection, finishes the calls it
    holds (a call arriving meanwhile on a kept-alive connection is answered with `Connection: close`) and exits
    (`worker_exit` writes its ledger); the master forks a fresh one."""
    if worker.alive:
        log.warning("worker left larger than its memory headroom by large calls: replacing it after its calls "
                    "in flight", extra={"resident_mb": round(resident / 2**20, 1),
                                        "floor_mb": round(floor / 2**20, 1), "headroom_mb": headroom >> 20})
        from cds_service.metrics import WORKER_REPLACEMENTS  # noqa: PLC0415 (after multiprocess metrics are set up)

        WORKER_REPLACEMENTS.inc()
        worker.handle_exit(signal.SIGTERM, None)


class JsonGunicornLogger(GunicornLogger):
    """gunicorn's own log lines (worker boots, timeouts, signals) as JSON, in the service's schema (cds_service.logs),
    so a log pipeline reads one format. gunicorn's access log stays off: the service writes one JSON line per request,
    with its request id."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for handler in self.error_log.handlers:
            handler.setFormatter(json_formatter())


class GunicornServer(BaseApplication):
    """gunicorn configured from the service's settings, with the app built by `create_app`."""

    def __init__(self, settings: Settings, host: str, port: int, workers: int) -> None:
        self.settings = settings
        self.options: dict[str, Any] = {
            "bind": f"{host}:{port}",
            "workers": workers,
            "worker_class": "gthread",
            "threads": settings.threads,
            "preload_app": True,
            "accesslog": None,  # the service writes its own JSON line per request (cds_service.logs)
            "errorlog": "-",
            "logger_class": JsonGunicornLogger,
            "loglevel": settings.log_level.lower(),
            "timeout": 30,
            "graceful_timeout": 30,
            "keepalive": 5,
            "proc_name": "cds-service",
            "control_socket_disable": True,  # not used; it would need a writable home directory in the container
        }
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        server_errors.install()  # gunicorn's own 400/431 answers as OperationOutcomes, in the master and its workers
        limit_malloc_arenas()  # before any worker thread exists (cds_service/memory.py)
        app = create_app()
        ledger = state(app).ledger
        database = state(app).database
        memory = state(app).worker_memory

        def post_fork(server: Any, worker: Any) -> None:
            # Connections the master may have pooled belong to it: drop them without closing (closing would end the
            # master's session too), then start this worker's ledger writer, which replays what others left.
            database.dispose(close=False)
            ledger.start()
            tracing.configure(state(app).settings.otlp_endpoint)  # the exporter's thread did not cross the fork
            memory.retire = lambda now, floor: retire(worker, now, floor, memory.headroom_bytes)

        self.cfg.set("post_fork", post_fork)
        # A worker finishing (SIGTERM: calls in flight end first) writes what its ledger holds; what the database
        # cannot take stays in the spool for the next start (atexit also closes it, as a second line).
        self.cfg.set("worker_exit", lambda server, worker: ledger.close())
        self.cfg.set("child_exit", lambda server, worker: multiprocess.mark_process_dead(worker.pid))
        freeze_start_up()
        return app
