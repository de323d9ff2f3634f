"""FHIR data for the services: prefetch templates (and, later, the FHIR client and the PatientRecord)."""
