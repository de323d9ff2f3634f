"""The deployment descriptions (deploy/) validated offline: the Kubernetes manifests against the API schemas of a
current Kubernetes (kubernetes-validate, strict: an unknown field is an error), the compose file against the Compose
Specification's schema (as check-jsonschema ships it)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import check_jsonschema
import jsonschema
import kubernetes_validate
import pytest
import yaml

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
KUBERNETES_VERSION = "1.30"
MANIFESTS = sorted((DEPLOY / "kubernetes").glob("*.yaml"))


def documents() -> list[tuple[str, dict]]:
    return [(f"{path.name}:{doc['kind']}", doc) for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text())]


def compose_errors(compose: dict) -> list[str]:
    schema_file = Path(check_jsonschema.__file__).parent / "builtin_schemas" / "vendor" / "compose-spec.json"
    schema = json.loads(schema_file.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [error.message for error in validator.iter_errors(compose)]


@pytest.mark.parametrize(("name", "document"), documents(), ids=[name for name, _ in documents()])
def test_each_kubernetes_manifest_is_valid(name, document):
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_the_manifests_hold_what_an_operator_needs():
    kinds = {doc["kind"]: doc for _, doc in documents()}
    assert set(kinds) == {"ConfigMap", "Secret", "Job", "Deployment", "Service", "HorizontalPodAutoscaler",
                          "PodDisruptionBudget"}
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}}
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 10001
    assert {"requests", "limits"} <= set(container["resources"])
    sources = {next(iter(source.values()))["name"] for source in container["envFrom"]}
    assert sources == {"cds-service"} and len(container["envFrom"]) == 2  # the ConfigMap and the Secret
    assert set(kinds["Secret"]["stringData"]) == {"CDS_DATABASE_URL", "CDS_PATIENT_HASH_SECRET"}
    assert kinds["Job"]["spec"]["template"]["spec"]["containers"][0]["command"] == ["cds-service", "db", "upgrade"]


def test_a_misspelt_field_is_caught():
    _, deployment = next((name, doc) for name, doc in documents() if doc["kind"] == "Deployment")
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    compose["services"]["cds"]["restart_policy"] = "always"
    assert compose_errors(compose)


def test_the_compose_file_is_valid_and_runs_migrations_before_the_instances():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert compose_errors(compose) == []
    services = compose["services"]
    assert set(services) == {"postgres", "migrate", "cds", "nginx"}
    assert services["migrate"]["command"] == ["cds-service", "db", "upgrade"]
    assert services["cds"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["cds"]["deploy"]["replicas"] == 3
    nginx = (DEPLOY / "nginx.conf").read_text()
    assert "proxy_next_upstream error non_idempotent;" in nginx and "proxy_request_buffering on;" in nginx
