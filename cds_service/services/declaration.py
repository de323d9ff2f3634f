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
    deprecated_ids: tuple[str, ...] = ()
    """Ids this service answered to before, still answering its hook but not listed in discovery: a client configured
    with one keeps working through the deprecation period the README names."""

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
    """The declared services, checked once at start-up: known hooks, unique (id, hook) pairs, 2.0-valid prefetch
    templates.

    One id may serve several hooks (CDS Hooks 2.0 discovery: an id may appear in several entries with different
    hooks); a call is dispatched on its `hook`. The order workflow uses this so that order-sign's cards replace
    order-select's in the client instead of being shown beside them.
    """

    def __init__(self, declarations: Iterable[CdsServiceDeclaration]) -> None:
        self._listed: dict[tuple[str, str], CdsServiceDeclaration] = {}
        self._by_id: dict[str, dict[str, CdsServiceDeclaration]] = {}
        self._deprecated: set[str] = set()
        for declaration in declarations:
            if declaration.hook not in HOOK_CONTEXTS:
                raise ValueError(f"service {declaration.id}: unsupported hook {declaration.hook!r}")
            for key, template in declaration.prefetch.items():
                bad = invalid_tokens(template)
                if bad:
                    raise ValueError(f"service {declaration.id}: prefetch {key!r} has invalid tokens {bad}")
            self._listed[(declaration.id, declaration.hook)] = declaration
            for service_id in (declaration.id, *declaration.deprecated_ids):
                hooks = self._by_id.setdefault(service_id, {})
                if declaration.hook in hooks:
                    raise ValueError(f"service id {service_id!r} declared twice for {declaration.hook}")
                hooks[declaration.hook] = declaration
            self._deprecated.update(declaration.deprecated_ids)
        clash = self._deprecated & {service_id for service_id, _ in self._listed}
        if clash:
            raise ValueError(f"service ids both listed and deprecated: {sorted(clash)}")

    def __iter__(self) -> Iterator[CdsServiceDeclaration]:
        """The listed declarations, one per (id, hook) pair, in discovery order."""
        return iter(self._listed.values())

    def __len__(self) -> int:
        return len(self._listed)

    def hooks(self, service_id: str) -> Mapping[str, CdsServiceDeclaration] | None:
        """The declarations answering at this id (listed or deprecated), by hook; None for an unknown id."""
        return self._by_id.get(service_id)

    def ids(self) -> list[str]:
        """Every id a call may use: the listed ones in discovery order, then the deprecated ones."""
        listed = list(dict.fromkeys(service_id for service_id, _ in self._listed))
        return listed + sorted(self._deprecated)

    def is_deprecated(self, service_id: str) -> bool:
        return service_id in self._deprecated

    def replace(self, declaration: CdsServiceDeclaration) -> None:
        """Swap a service's declaration (same id and hook); used by tests to inject behaviour."""
        key = (declaration.id, declaration.hook)
        if key not in self._listed:
            raise KeyError(key)
        self._listed[key] = declaration
        for service_id in (declaration.id, *declaration.deprecated_ids):
            self._by_id[service_id][declaration.hook] = declaration

    def discovery(self) -> dict[str, Any]:
        return {"services": [declaration.discovery_entry() for declaration in self]}
