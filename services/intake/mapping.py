"""The intake channels as pure code: request validation and request -> event (docs/feeds.md, "The intake channels").

No I/O here. `validate(channel, data, today)` turns a decoded JSON body into a `Report` or every field error;
`to_event(report, ...)` turns a report into the `IntakeReport` record to publish: the head's ID number replaced by
its person_key, the reporter dropped, ID numbers, phone numbers and the reporter's name masked in the description.

Event identity: with a caller's `request_id` the event_id is a hash of the channel and that id alone, so the same
request sent again - to this process or after a restart - carries the same event_id and is a duplicate
downstream; without one, it is a hash of the pseudonymised report (as the file connectors do), so an identical
report is one event. `Report.fingerprint` (the normalised request) tells a replay from a different request that
reuses a request_id.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from connectors import fields
from connectors.fields import PHONE_MASK
from connectors.idcard import InvalidId, normalise_id
from connectors.pseudonym import Pseudonymiser
from schemas.catalog import INTAKE, INTAKE_CHANNELS, INTAKE_SCHEMA

__all__ = [
    "CHANNELS",
    "CHANNEL_SYMBOLS",
    "RISK_TYPES",
    "VISIT_RESULTS",
    "CLUE_SOURCES",
    "MAX_DESCRIPTION",
    "FieldProblem",
    "Invalid",
    "Report",
    "IntakeEvent",
    "MODELS",
    "validate",
    "mask_free_text",
    "event_id_for",
    "to_event",
]

CHANNELS: dict[str, str] = {feed.feed: feed.topic for feed in INTAKE_CHANNELS}  # channel -> topic
CHANNEL_SYMBOLS = {"self-declaration": "SELF_DECLARATION", "cadre-visit": "CADRE_SCREENING",
                   "social-clue": "SOCIAL_CLUE"}
RISK_TYPES = {"因病": "ILLNESS", "因灾": "DISASTER", "因学": "EDUCATION", "因残": "DISABILITY", "因意外": "ACCIDENT",
              "就业": "EMPLOYMENT", "住房": "HOUSING", "饮水": "DRINKING_WATER", "其他": "OTHER"}
VISIT_RESULTS = {"正常": "NORMAL", "存在风险": "AT_RISK", "已返贫": "RELAPSED"}
CLUE_SOURCES = {"媒体": "MEDIA", "信访": "PETITION", "政府信箱": "GOVERNMENT_MAILBOX", "网络": "INTERNET",
                "其他": "OTHER"}
MAX_DESCRIPTION = 2000
INTAKE_VERSION = "0.1.0"

RiskType = Literal["因病", "因灾", "因学", "因残", "因意外", "就业", "住房", "饮水", "其他"]
VisitResult = Literal["正常", "存在风险", "已返贫"]
ClueSource = Literal["媒体", "信访", "政府信箱", "网络", "其他"]

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# mobile numbers (11 digits from 1[3-9]), landlines with an area code (0xx-xxxxxxxx), not inside a longer digit run
_PHONE = re.compile(r"(?<!\d)(?:\+?86[- ]?)?(?:1[3-9]\d[- ]?\d{4}[- ]?\d{4}|0\d{2,3}[- ]?\d{7,8})(?!\d)")


def mask_free_text(text: str, names: tuple[str, ...] = ()) -> str:
    """The connectors' masking (ID and mobile numbers, the given names), and landline numbers too: a report
    often gives a household's phone (the channels' contract: masked before publishing)."""
    return _PHONE.sub(PHONE_MASK, fields.mask_free_text(text, names))


def _encodable(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("contains characters that are not valid Unicode (lone surrogates)") from None
    return value


class _Request(BaseModel):
    """The fields every channel shares. Unknown fields are errors (a typo must not be dropped silently)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)

    head_id_number: str | None = Field(None, description="the household head's ID number (身份证号码, 18 or 15 "
                                                         "characters); never published, replaced by its person_key")
    household_id: str | None = Field(None, min_length=1, max_length=40, description="户编号")
    risk_type: RiskType = Field(description="风险类型")
    description: str = Field(min_length=1, max_length=MAX_DESCRIPTION,
                             description="free text; ID numbers, phone numbers and the reporter's name are masked "
                                         "before publishing")
    reported_on: str = Field(description="YYYY-MM-DD, not in the future", examples=["2025-03-05"])
    reporter: str = Field(min_length=1, max_length=100,
                          description="who submits: the member's name, the cadre's name or the clue's contact; "
                                      "never published")
    request_id: str | None = Field(None, pattern=r"^[A-Za-z0-9._:-]{1,128}$",
                                   description="idempotency key chosen by the caller: the same request_id twice "
                                               "is one event")

    @field_validator("*", mode="after")
    @classmethod
    def _valid_unicode(cls, value: Any) -> Any:
        return _encodable(value) if isinstance(value, str) else value

    @field_validator("head_id_number", mode="after")
    @classmethod
    def _id_number(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return normalise_id(value)
        except InvalidId as exc:
            raise ValueError(f"invalid ID number: {exc}") from None

    @field_validator("household_id", mode="after")
    @classmethod
    def _household(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:  # an ID number must never travel as a household id (the roster's 户编号 is any text up to 40)
            normalise_id(value)
        except InvalidId:
            return value
        raise ValueError("is a resident ID number; send the head's ID number as head_id_number")

    @field_validator("reported_on", mode="after")
    @classmethod
    def _date(cls, value: str, info: ValidationInfo) -> str:
        if not _DATE.fullmatch(value):
            raise ValueError("must be a date written YYYY-MM-DD")
        try:
            day = dt.date.fromisoformat(value)
        except ValueError:
            raise ValueError("is not a real date") from None
        today = info.context.get("today") if isinstance(info.context, dict) else None
        if isinstance(today, dt.date) and day > today:
            raise ValueError(f"is in the future (today is {today.isoformat()})")
        if day.year < 1900:
            raise ValueError("is before 1900")
        return value

    @model_validator(mode="after")
    def _household_named(self) -> _Request:
        if self.head_id_number is None and self.household_id is None:
            raise ValueError("one of head_id_number or household_id is required")
        return self


class SelfDeclarationRequest(_Request):
    """农户自主申报: a household declares itself (phone app or web)."""


class CadreVisitRequest(_Request):
    """基层干部排查: a village cadre's visit."""

    visit_result: VisitResult = Field(description="走访结果")


class SocialClueRequest(_Request):
    """社会信息补充: a clue from media, petitions, the government mailbox or public networks."""

    clue_source: ClueSource = Field(description="线索来源")


MODELS: dict[str, type[_Request]] = {"self-declaration": SelfDeclarationRequest, "cadre-visit": CadreVisitRequest,
                                     "social-clue": SocialClueRequest}
_ONLY_FOR = {"visit_result": "cadre-visit", "clue_source": "social-clue"}


@dataclass(frozen=True)
class FieldProblem:
    field: str
    message: str


@dataclass(frozen=True)
class Invalid:
    """Every field error of a request (never echoing the values sent)."""

    problems: tuple[FieldProblem, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"detail": f"{len(self.problems)} field error(s)",
                "errors": [{"field": p.field, "message": p.message} for p in self.problems]}


@dataclass(frozen=True)
class Report:
    """A valid request: the channel and its normalised fields (still holding the ID number and the reporter)."""

    channel: str
    fields: Mapping[str, Any]

    @property
    def request_id(self) -> str | None:
        value = self.fields.get("request_id")
        return value if isinstance(value, str) else None

    @property
    def fingerprint(self) -> str:
        """A hash of the whole normalised request: the same request sent twice has the same fingerprint."""
        canonical = json.dumps({"channel": self.channel, **self.fields}, ensure_ascii=False, sort_keys=True)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _problem(error: Mapping[str, Any], channel: str) -> FieldProblem:
    loc = [str(part) for part in error.get("loc", ())]
    name = ".".join(loc) or "body"
    message = str(error.get("msg", "invalid"))
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    if error.get("type") == "extra_forbidden":
        only = _ONLY_FOR.get(name)
        message = f"only for {only} requests" if only else "unknown field"
    elif error.get("type") == "literal_error" and name in ("risk_type", "visit_result", "clue_source"):
        allowed = {"risk_type": RISK_TYPES, "visit_result": VISIT_RESULTS, "clue_source": CLUE_SOURCES}[name]
        message = "must be one of " + " / ".join(allowed)
    return FieldProblem(name, message)


def validate(channel: str, data: Any, today: dt.date) -> Report | Invalid:
    """A decoded JSON body -> the report, or every problem found. `channel` must be one of CHANNELS."""
    if not isinstance(data, dict):
        return Invalid((FieldProblem("body", "must be a JSON object"),))
    try:
        model = MODELS[channel].model_validate(data, context={"today": today})
    except ValidationError as exc:
        return Invalid(tuple(_problem(error, channel) for error in exc.errors(include_input=False)))
    return Report(channel, model.model_dump())


@dataclass(frozen=True)
class IntakeEvent:
    """What to publish: the topic, the Kafka key, the record (schema INTAKE_SCHEMA)."""

    topic: str
    key: bytes
    record: dict[str, Any]
    schema: str = INTAKE_SCHEMA

    @property
    def event_id(self) -> str:
        return str(self.record["event_id"])


def event_id_for(channel: str, request_id: str | None, body: Mapping[str, Any]) -> str:
    """Deterministic event id: from the channel and request_id, or from the pseudonymised report."""
    if request_id is not None:
        basis = f"request\x1f{request_id}"
    else:
        basis = "report\x1f" + json.dumps({k: str(v) if isinstance(v, dt.date) else v for k, v in body.items()},
                                          ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{INTAKE}\x1f{channel}\x1f{basis}".encode()).hexdigest()[:32]


def to_event(report: Report, pseudonymiser: Pseudonymiser, now: dt.datetime) -> IntakeEvent:
    """The IntakeReport record of a valid report: person_key instead of the ID number, no reporter, text masked."""
    f = report.fields
    head = f.get("head_id_number")
    head_key = pseudonymiser.person_key(head) if head else None
    reporter = str(f["reporter"])
    reported_on = dt.date.fromisoformat(str(f["reported_on"]))
    visit = f.get("visit_result")
    clue = f.get("clue_source")
    body: dict[str, Any] = {
        "head_person_key": head_key,
        "household_id": f.get("household_id"),
        "channel": CHANNEL_SYMBOLS[report.channel],
        "risk_type": RISK_TYPES[str(f["risk_type"])],
        "description": mask_free_text(str(f["description"]), (reporter,)),
        "reported_on": reported_on,
        "visit_result": VISIT_RESULTS[visit] if isinstance(visit, str) else None,
        "clue_source": CLUE_SOURCES[clue] if isinstance(clue, str) else None,
    }
    event_id = event_id_for(report.channel, report.request_id, body)
    record = {
        "event_id": event_id,
        "occurred_at": reported_on,
        "ingested_at": now,
        "source": {"department": INTAKE, "feed": report.channel, "origin": f"POST /v1/intake/{report.channel}",
                   "row": 0, "connector_version": INTAKE_VERSION,
                   "key_id": pseudonymiser.key_id if head_key is not None else ""},
        **body,
    }
    key = head_key if head_key is not None else str(f["household_id"])
    return IntakeEvent(CHANNELS[report.channel], key.encode("utf-8"), record)
