"""A variant of `cds-service serve` for bench/ledger.py: the service's gunicorn set-up with the worker class and the
ledger chosen, so that the set-up before the reliability work (sync workers, in-memory ledger) and the one after it
(gthread workers, durable ledger) are measured in one run.

    python bench/serve.py PORT WORKER_CLASS LEDGER      # WORKER_CLASS: sync | gthread; LEDGER: memory | durable
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from cds_service.state import state

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    port, worker_class, ledger = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    from cds_service.cli import _prepare_multiprocess_metrics  # noqa: PLC0415

    _prepare_multiprocess_metrics()
    from bench.memory_ledger import MemoryLedger  # noqa: PLC0415
    from cds_service.config import load_settings  # noqa: PLC0415
    from cds_service.logs import configure_logging  # noqa: PLC0415
    from cds_service.server import GunicornServer  # noqa: PLC0415

    class Variant(GunicornServer):
        def load_config(self) -> None:
            super().load_config()
            self.cfg.set("worker_class", worker_class)
            if worker_class == "sync":
                self.cfg.set("threads", 1)  # gunicorn runs gthread for "sync" with more than one thread

        def load(self) -> Any:
            app = super().load()
            if ledger == "memory":
                state(app).ledger = MemoryLedger(state(app).database)
            return app

    settings = load_settings()
    configure_logging(settings.log_level)
    server = Variant(settings, host="127.0.0.1", port=port, workers=2)
    server.run()


if __name__ == "__main__":
    main()
