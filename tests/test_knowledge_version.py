"""The knowledge version: which files it covers, and that a change of any of them (a rule's source included) changes
it, so the report never mixes the acceptance of a changed rule with the old one's."""

from __future__ import annotations

from cds_service import knowledge_version as module
from cds_service.clinical.knowledge import load_thresholds


def test_it_covers_value_sets_thresholds_suggestions_templates_and_the_rules_source():
    names = {name for name, _ in module.knowledge_files()}
    for expected in ("cds_service.clinical/rules.py", "cds_service.clinical/facts.py", "cds_service.clinical/orders.py",
                     "cds_service.clinical/thresholds.json", "cds_service.clinical/suggestions.json",
                     "cds_service.terminology/VS-19.json", "cds_service.card_templates/fbss-imaging.yaml",
                     "cds_service.card_templates/links.yaml", "cds_service.card_templates/stack.yaml",
                     "cds_service.card_templates/override-reasons.json"):
        assert expected in names, expected
    assert not any(name.endswith(".md") for name in names)  # the specification's prose is not knowledge in force


def test_a_changed_rule_source_or_threshold_changes_the_version_and_prose_does_not(monkeypatch):
    thresholds = load_thresholds()
    files = module.knowledge_files()
    before = module.knowledge_version(thresholds)
    assert before == module.knowledge_version(thresholds)  # stable
    changed = [(name, content + b"\n# a changed rule\n" if name.endswith("/rules.py") else content)
               for name, content in files]
    monkeypatch.setattr(module, "knowledge_files", lambda: changed)
    assert module.knowledge_version(thresholds) != before
    monkeypatch.setattr(module, "knowledge_files", lambda: files)
    assert module.knowledge_version(load_thresholds(overrides={"HBA1C_UNCONTROLLED_PERCENT": 7.5})) != before
