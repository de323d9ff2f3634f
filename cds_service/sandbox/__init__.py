"""Sandbox tools: a read-only FHIR server over the fixtures, and a built-in page to try the services."""
