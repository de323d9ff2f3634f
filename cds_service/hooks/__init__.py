"""The CDS Hooks request and the context of each hook."""
