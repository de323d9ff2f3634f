"""The clinical core: facts F1-F17 and rules R1-R11 as pure functions of (record, now, thresholds).

No Flask, no I/O and no clock inside: `evaluate(record, now, thresholds)` returns findings that carry their evidence.
"""

from cds_service.clinical.engine import Evaluation, evaluate, evaluate_orders
from cds_service.clinical.knowledge import Thresholds, load_thresholds
from cds_service.clinical.medications import reads_medication

__all__ = ["Evaluation", "Thresholds", "evaluate", "evaluate_orders", "load_thresholds", "reads_medication"]
