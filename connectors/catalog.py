"""Every declared feed, by (department, feed). The command line and the demo look feeds up here."""
from __future__ import annotations

from connectors.departments.bureau import ROSTER
from connectors.departments.education import DROPOUT
from connectors.departments.emergency import DISASTER_LOSS
from connectors.departments.medical_security import HOSPITALIZATION
from connectors.departments.public_security import REGISTRATION_CHANGE, VEHICLE_PURCHASE
from connectors.framework import FeedSpec
from schemas.errors import UnknownFeed

__all__ = ["EVENT_FEEDS", "ROSTER", "get_feed"]

EVENT_FEEDS: dict[tuple[str, str], FeedSpec] = {
    (spec.department, spec.feed): spec
    for spec in (REGISTRATION_CHANGE, VEHICLE_PURCHASE, HOSPITALIZATION, DISASTER_LOSS, DROPOUT)
}


def get_feed(department: str, feed: str) -> FeedSpec:
    spec = EVENT_FEEDS.get((department, feed))
    if spec is None:
        known = ", ".join(f"{d} {f}" for d, f in sorted(EVENT_FEEDS))
        raise UnknownFeed(f"unknown feed {department} {feed}; known feeds: {known}")
    return spec
