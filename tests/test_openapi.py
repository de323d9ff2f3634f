"""GET /openapi.json: a valid OpenAPI 3.1 document whose paths and methods are exactly the app's routes."""

from __future__ import annotations

import re

import orjson
from openapi_spec_validator import validate

from cds_service.services import declared_services

_IGNORED_METHODS = {"HEAD", "OPTIONS"}


def _app_operations(app) -> set[tuple[str, str]]:
    operations = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        operations |= {(path, method.lower()) for method in rule.methods - _IGNORED_METHODS}
    return operations


def test_openapi_document_is_valid_3_1(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    document = orjson.loads(response.get_data())
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_openapi_paths_match_the_routes(app, client):
    document = orjson.loads(client.get("/openapi.json").get_data())
    documented = {(path, method) for path, item in document["paths"].items() for method in item}
    assert documented == _app_operations(app)


def test_openapi_lists_the_declared_service_ids(client):
    document = orjson.loads(client.get("/openapi.json").get_data())
    enum = document["components"]["parameters"]["ServiceId"]["schema"]["enum"]
    assert enum == ["fbss-miss-advisor", "fbss-miss-orders", "fbss-miss-order-select", "fbss-miss-order-sign"]
    assert enum[:2] == list(dict.fromkeys(service.id for service in declared_services()))


def test_every_error_status_the_service_uses_is_documented(client):
    document = orjson.loads(client.get("/openapi.json").get_data())
    invoke = document["paths"]["/cds-services/{service_id}"]["post"]["responses"]
    assert {"200", "400", "401", "404", "405", "412", "413", "415", "500"} <= set(invoke)
    assert document["paths"]["/cds-services"]["get"]["security"] == [{"cdsClientJwt": []}]
