"""Run the app under gunicorn: sync workers (one per core by default), app preloaded in the master, then frozen.

Sync workers are the measured ceiling for this CPU-bound service on small machines (bench/ and
performance-notes.md); `--preload` builds the app (settings, declarations, engine) once before forking, and
`gc.freeze()` moves everything built at start-up out of the garbage collector's view, which removes the p99 spikes of
the collector re-scanning it on every request. The young generation's threshold is then raised (see
`freeze_start_up`).
"""

from __future__ import annotations

import gc
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication
from prometheus_client import multiprocess

from cds_service.app import create_app
from cds_service.config import Settings

GC_YOUNG_THRESHOLD = 10_000
"""Net new container objects between young collections (CPython's default is 700; 3.13 raised it to 2,000)."""


def freeze_start_up() -> None:
    """Everything built so far out of the collector's view (`gc.freeze`), then fewer young collections.

    The decoded prefetch of a 100-resource request is more than 700 container objects, all alive until the response
    is built, so with CPython's default threshold every such request set off a young collection that traced them
    all to free a handful: 2.5 % of the request's time (timed with `gc.callbacks`; 0.2 % at 10,000). All a request
    leaves to the collector is a few small reference cycles (werkzeug's URL matcher makes one, about 0.7 KB), so
    collecting ten times less often keeps under a megabyte more between collections.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


class GunicornServer(BaseApplication):
    """gunicorn configured from the service's settings, with the app built by `create_app`."""

    def __init__(self, settings: Settings, host: str, port: int, workers: int) -> None:
        self.settings = settings
        self.options: dict[str, Any] = {
            "bind": f"{host}:{port}",
            "workers": workers,
            "worker_class": "sync",
            "preload_app": True,
            "accesslog": None,  # the service writes its own JSON line per request (cds_service.logs)
            "errorlog": "-",
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
        app = create_app()
        ledger = app.extensions["cds.ledger"]
        # A worker finishing cleanly writes what its ledger still holds (atexit also does, as a second line).
        self.cfg.set("worker_exit", lambda server, worker: ledger.close())
        self.cfg.set("child_exit", lambda server, worker: multiprocess.mark_process_dead(worker.pid))
        freeze_start_up()
        return app
