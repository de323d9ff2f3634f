"""Card templates (YAML), one per card type; a package only so that they ship inside cds_service."""
