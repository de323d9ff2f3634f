"""schemathesis against the service's own OpenAPI description, in-process (WSGI): generated requests for every
operation, a bounded number of examples each; no answer is a server error, and every error answer is an
OperationOutcome."""

from __future__ import annotations

import tempfile

import orjson
import schemathesis
from hypothesis import HealthCheck, settings

from cds_service import create_app

APP = create_app({"INSTANCE_PATH": tempfile.mkdtemp(prefix="cds-schemathesis-"), "TESTING": True})
SCHEMA = schemathesis.openapi.from_wsgi("/openapi.json", APP)


@SCHEMA.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_generated_requests_never_get_a_server_error(case):
    response = case.call()
    assert response.status_code < 500, (case.method, case.path, response.status_code, response.text[:300])
    if response.status_code >= 400:
        body = orjson.loads(response.content)
        assert body["resourceType"] == "OperationOutcome", (case.method, case.path, response.status_code)
