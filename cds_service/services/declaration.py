"""What a CDS service is: a small declaration from which discovery and dispatch are generated."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cds_service.fhir.prefetch import invalid_tokens
from cds_service.hooks.contexts import HOOK_CONTEXTS
from cds_service.hooks.request import HookRequest
from cds_service.jsonio import compact

if TYPE_CHECKING:
    from cds_service.services.runtime import Runtime

Card = dict[str, Any]
Advise = Callable[[HookRequest, "Runtime"], list[Card]]


@dataclass(frozen=True)
class CdsServiceDeclaration:
    """One CDS service: the discovery fields and the function that turns a checked request into cards."""

    id: str
    hook: str
    title: str
    description: str
    advise: Advise
    prefetch: Mapping[str, str] = field(default_factory=dict)
    usage_requirements: str | None = None

    def discovery_entry(self) -> dict[str, Any]:
        """The service's entry in `GET /cds-services` (optional members omitted when empty, per G2/D6)."""
        return compact({
            "hook": self.hook,
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "prefetch": dict(self.prefetch),
            "usageRequirements": self.usage_requirements,
        })


class ServiceRegistry:
    """The declared services, checked once at start-up: known hooks, unique ids, 2.0-valid prefetch templates."""

    def __init__(self, declarations: Iterable[CdsServiceDeclaration]) -> None:
        self._by_id: dict[str, CdsServiceDeclaration] = {}
        for declaration in declarations:
            if declaration.hook not in HOOK_CONTEXTS:
                raise ValueError(f"service {declaration.id}: unsupported hook {declaration.hook!r}")
            if declaration.id in self._by_id:
                raise ValueError(f"service id {declaration.id!r} declared twice")
            for key, template in declaration.prefetch.items():
                bad = invalid_tokens(template)
                if bad:
                    raise ValueError(f"service {declaration.id}: prefetch {key!r} has invalid tokens {bad}")
            self._by_id[declaration.id] = declaration

    def __iter__(self) -> Iterator[CdsServiceDeclaration]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, service_id: str) -> CdsServiceDeclaration | None:
        return self._by_id.get(service_id)

    def replace(self, declaration: CdsServiceDeclaration) -> None:
        """Swap a service's declaration (same id); used by tests to inject behaviour."""
        if declaration.id not in self._by_id:
            raise KeyError(declaration.id)
        self._by_id[declaration.id] = declaration

    def discovery(self) -> dict[str, Any]:
        return {"services": [declaration.discovery_entry() for declaration in self]}
