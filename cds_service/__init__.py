"""CDS Hooks 2.0 service: failed back surgery syndrome (FBSS) and minimally invasive / revision spine surgery.

`create_app` is the Flask application factory; `cds-service serve` runs it under gunicorn.
"""

from cds_service.app import create_app

__all__ = ["create_app"]
