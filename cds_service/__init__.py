"""CDS Hooks 2.0 service: failed back surgery syndrome (FBSS) and minimally invasive / revision spine surgery.

`create_app` is the Flask application factory; `cds-service serve` runs it under gunicorn. The factory is imported on
first use, so the command line can prepare the process (metrics in multiprocess mode) before the app is loaded.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from cds_service.app import create_app  # noqa: PLC0415 (lazy on purpose, see above)

        return create_app
    raise AttributeError(name)
