"""The names of the monitor's own topics and consumer groups (its app id, `POVWATCH_MONITOR_APP_ID`, prefixes
them, so two monitors never share them). Apart from the engine, so that `povwatch status` can name them."""
from __future__ import annotations

__all__ = ["MonitorTopics"]


class MonitorTopics:
    """The names of the monitor's own topics, prefixed with its app id so two monitors never share them."""

    def __init__(self, app_id: str) -> None:
        self.household_events = f"{app_id}.household-events"
        self.village_disasters = f"{app_id}.village-disasters"
        self.person_state = f"{app_id}.person-state"
        self.household_state = f"{app_id}.household-state"
        self.village_state = f"{app_id}.village-state"
        self.unmatched = f"{app_id}.unmatched"
        self.person_group = app_id
        self.household_group = f"{app_id}.household"
        self.village_group = f"{app_id}.village"

    @property
    def groups(self) -> tuple[str, str, str]:
        return self.person_group, self.household_group, self.village_group
