"""The `usageRequirements` text shared by the services (CDS Hooks 2.0 discovery, D7)."""

PATIENT_DATA_USAGE = (
    "Reads the patient's Patient, Condition, Procedure, Observation, MedicationRequest, MedicationStatement, "
    "ServiceRequest, DiagnosticReport and ImagingStudy resources: prefetched, or read from fhirServer with "
    "fhirAuthorization (user/*.read or patient/*.read scopes for those types). Every call carries a client JWT "
    "(ES384 or RS384) from an issuer the service operator has configured, with aud set to the URL called."
)
