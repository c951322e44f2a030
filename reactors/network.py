"""The service network's process logic, configured in one place.

`NetworkConfig` gathers the rules of dispatch, the permit and spare parts (built from the
settings by `closedloop.app.settings.Settings.network_config`); `network_reactors` gives the engine's reactors that apply them. The permit
keeper runs first, so that a status change it decides reaches the dispatcher in the same
round.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from closedloop.domain.network import DispatchPolicy
from closedloop.domain.parts import PartsRules
from closedloop.domain.permit import PermitRules


@dataclass(frozen=True)
class NetworkConfig:
    dispatch: DispatchPolicy = field(default_factory=DispatchPolicy)
    permit: PermitRules = field(default_factory=PermitRules)
    parts: PartsRules = field(default_factory=PartsRules)

    def with_auto_dispatch(self, on: bool) -> "NetworkConfig":
        from dataclasses import replace

        return replace(self, dispatch=replace(self.dispatch, auto_dispatch=on))

    def fingerprint(self) -> str:
        return "/".join((self.dispatch.fingerprint(), self.permit.fingerprint(), self.parts.fingerprint()))

    def describe(self) -> dict[str, Any]:
        d = self.dispatch
        return {
            "auto_dispatch": d.auto_dispatch,
            "accept_within_minutes": d.accept_within / 60_000,
            "escalate_after_minutes": d.escalate_after / 60_000,
            "max_redispatches": d.max_redispatches,
            "warning_share": d.warning_share,
            "auto_approve_parts": self.parts.auto_approve,
            "permit": self.permit.describe(),
        }


def network_reactors(config: NetworkConfig) -> list[Any]:
    from closedloop.reactors.dispatcher import Dispatcher
    from closedloop.reactors.parts_approver import PartsApprover
    from closedloop.reactors.permit_keeper import PermitKeeper

    return [PermitKeeper(config.permit, config.dispatch.behind), PartsApprover(config.parts),
            Dispatcher(config.dispatch)]
