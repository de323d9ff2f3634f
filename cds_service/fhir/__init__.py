"""FHIR data for the services: prefetch templates and their resolution, the FHIR client, dates, the PatientRecord."""
