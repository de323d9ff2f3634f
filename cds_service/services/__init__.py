"""The CDS services this deployment offers, one module per service (one per hook)."""

from __future__ import annotations

from cds_service.services import order_select, order_sign, patient_view
from cds_service.services.declaration import CdsServiceDeclaration, ServiceRegistry


def declared_services() -> tuple[CdsServiceDeclaration, ...]:
    """Every service, in discovery order."""
    return (patient_view.SERVICE, order_select.SERVICE, order_sign.SERVICE)


__all__ = ["CdsServiceDeclaration", "ServiceRegistry", "declared_services"]
