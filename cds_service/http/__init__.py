"""HTTP layer: blueprints that translate requests to calls and back. Nothing clinical is decided here."""
