"""Every declared feed, by (department, feed). The command line, the demo and the services look feeds up here.

Which feeds exist is schemas/catalog.py's to say; each department module under connectors/departments/ declares
the `FeedSpec` (columns, checks) of its feeds. The specs are found by looking through those modules, so there is
no list to keep in step here: this module refuses to load if a catalogue feed has no connector or a connector
names a feed the catalogue lacks. `EVENT_FEEDS` follows the catalogue's order.
"""
from __future__ import annotations

import importlib
import pkgutil

import connectors.departments
from connectors.departments.bureau import ROSTER
from connectors.framework import FeedSpec
from schemas import catalog
from schemas.errors import UnknownFeed

__all__ = ["EVENT_FEEDS", "ROSTER", "get_feed", "connectors_by_feed", "declared_specs"]


def declared_specs() -> tuple[FeedSpec, ...]:
    """Every event-feed `FeedSpec` declared at module level in connectors/departments/ (the roster excluded)."""
    found: dict[int, FeedSpec] = {}
    for info in sorted(pkgutil.iter_modules(connectors.departments.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"connectors.departments.{info.name}")
        for value in vars(module).values():
            if isinstance(value, FeedSpec) and value.wire is not catalog.ROSTER:
                found[id(value)] = value
    return tuple(found.values())


def connectors_by_feed(connectors: tuple[FeedSpec, ...]) -> dict[tuple[str, str], FeedSpec]:
    """The connectors keyed by (department, feed) in catalogue order; a catalogue feed without exactly one
    connector, or a connector for a feed the catalogue does not list, is a programming error (ValueError)."""
    by_wire: dict[catalog.Feed, FeedSpec] = {}
    for spec in connectors:
        if spec.wire not in catalog.EVENT_FEEDS:
            raise ValueError(f"connector for {spec.department} {spec.feed}: not an event feed of schemas/catalog.py")
        if spec.wire in by_wire:
            raise ValueError(f"two connectors for {spec.department} {spec.feed}")
        by_wire[spec.wire] = spec
    missing = [f"{f.department} {f.feed}" for f in catalog.EVENT_FEEDS if f not in by_wire]
    if missing:
        raise ValueError(f"feeds of schemas/catalog.py without a connector: {', '.join(missing)}")
    return {(f.department, f.feed): by_wire[f] for f in catalog.EVENT_FEEDS}


EVENT_FEEDS: dict[tuple[str, str], FeedSpec] = connectors_by_feed(declared_specs())


def get_feed(department: str, feed: str) -> FeedSpec:
    spec = EVENT_FEEDS.get((department, feed))
    if spec is None:
        known = ", ".join(f"{d} {f}" for d, f in sorted(EVENT_FEEDS))
        raise UnknownFeed(f"unknown feed {department} {feed}; known feeds: {known}")
    return spec
