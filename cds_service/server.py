"""Run the app under gunicorn: sync workers (one per core by default), app preloaded in the master, then frozen.

Sync workers are the measured ceiling for this CPU-bound service on small machines (bench/ and
performance-notes.md); `--preload` builds the app (settings, declarations, engine) once before forking, and
`gc.freeze()` moves everything built at start-up out of the garbage collector's view, which removes the p99 spikes of
the collector re-scanning it on every request.
"""

from __future__ import annotations

import gc
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication
from prometheus_client import multiprocess

from cds_service.app import create_app
from cds_service.config import Settings


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
        gc.collect()
        gc.freeze()
        return app
