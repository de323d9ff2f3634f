"""Findings to CDS Hooks cards, from the templates in cards/."""
