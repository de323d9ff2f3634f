"""Client authentication (CDS Hooks 2.0 JWT) and trusted issuers."""
