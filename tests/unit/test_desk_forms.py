"""The desk's pure parts: the signed session (forgery, expiry, revocation, CSRF comparison) and the forms (the
worklist's filters, a step's fields and its parsed input, one-line errors)."""
from __future__ import annotations

import datetime as dt

import pytest

from services.cases.workflow import STEP_LABELS, Role, Step
from services.desk.forms import FormError, fields_for, parse_filters, parse_step, step_label
from services.desk.sessions import LoginThrottle, SessionCodec, cookie_options, csrf_ok

SECRET = "unit-test-desk-secret-0123456789"
TODAY = dt.date(2025, 3, 10)


# --- sessions ------------------------------------------------------------------------------------------------
def test_a_session_survives_the_round_trip_and_nothing_else_does() -> None:
    codec = SessionCodec(SECRET)
    session = codec.new("zhang")
    raw = codec.dump(session)
    assert codec.load(raw) == session
    assert codec.load(None) is None and codec.load("") is None
    assert codec.load(raw[:-2] + ("A" if raw[-2] != "A" else "B") + raw[-1]) is None  # one character changed
    assert SessionCodec("another-secret-0123456789abcdef").load(raw) is None  # another desk's secret
    assert codec.load("not a cookie at all") is None
    # a signed value that is not a session (same secret, wrong shape)
    assert codec.load(codec._serializer.dumps(["zhang"])) is None
    assert codec.load(codec._serializer.dumps({"sid": 1, "csrf": "x", "user": None})) is None


def test_sessions_expire_and_logging_out_revokes_this_one_only() -> None:
    now = [1_741_600_000.0]
    codec = SessionCodec(SECRET, max_age=8 * 3600, clock=lambda: now[0])
    session = codec.new("zhang")
    old = codec.dump(session)
    now[0] += 8 * 3600  # the last second of its working day: still good
    assert codec.load(old) == session
    now[0] += 1
    assert codec.load(old) is None
    assert SessionCodec(SECRET).load(old) is None  # the real clock: issued long ago
    codec = SessionCodec(SECRET)
    a, b = codec.new("zhang"), codec.new("zhang")
    codec.revoke(a)
    assert codec.load(codec.dump(a)) is None
    assert codec.load(codec.dump(b)) == b


def test_new_sessions_have_fresh_ids_and_tokens() -> None:
    sessions = [SessionCodec.new() for _ in range(50)]
    assert len({s.sid for s in sessions}) == 50 and len({s.csrf for s in sessions}) == 50
    assert all(len(s.csrf) >= 40 for s in sessions)


def test_csrf_comparison() -> None:
    session = SessionCodec.new("zhang")
    assert csrf_ok(session, session.csrf)
    assert not csrf_ok(session, None) and not csrf_ok(session, "")
    assert not csrf_ok(session, session.csrf[:-1])
    assert not csrf_ok(None, session.csrf)
    assert not csrf_ok(session, SessionCodec.new("zhang").csrf)
    assert not csrf_ok(session, "令牌")  # not ASCII: refused, not an error


def test_cookie_options() -> None:
    assert cookie_options(secure=True) == {"max_age": 8 * 3600, "path": "/", "httponly": True, "samesite": "lax",
                                           "secure": True}
    assert cookie_options(secure=False)["secure"] is False


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ValueError):
        SessionCodec("short")


# --- filters -------------------------------------------------------------------------------------------------
def test_filters_empty_values_mean_any() -> None:
    f = parse_filters({"county": "", "township": " ", "rule": "", "severity": "", "step": ""})
    assert f.as_query() == {}
    f = parse_filters({"county": "652701", "township": "652701100", "rule": "MEDICAL_EXPENSE",
                       "severity": "HIGH", "step": "PUBLIC_NOTICE"})
    assert f.as_query() == {"county": "652701", "township": "652701100", "rule": "MEDICAL_EXPENSE",
                            "severity": "HIGH", "step": "PUBLIC_NOTICE"}
    assert parse_filters({"step": "NONE"}).step == "NONE"


@pytest.mark.parametrize("query, words", [
    ({"county": "65270"}, "6位"), ({"county": "6527011"}, "6位"), ({"township": "652701"}, "9位"),
    ({"rule": "FLOOD"}, "FLOOD"), ({"severity": "CRITICAL"}, "CRITICAL"), ({"step": "JUMP"}, "JUMP"),
    ({"county": "６５２７０１"}, "6位"),  # full-width digits are not a code
])
def test_bad_filters_are_one_line(query: dict[str, str], words: str) -> None:
    with pytest.raises(FormError) as caught:
        parse_filters(query)
    assert words in str(caught.value) and "\n" not in str(caught.value)


# --- step forms ----------------------------------------------------------------------------------------------
def test_which_fields_each_step_has() -> None:
    assert fields_for(Step.APPLY, Role.VILLAGE).authorised
    assert not fields_for(Step.PUBLIC_NOTICE, Role.VILLAGE).authorised
    assert fields_for(Step.DATA_COMPARE, Role.COUNTY).override
    assert not fields_for(Step.DATA_COMPARE, Role.BUREAU).override  # only a county user may override
    assert not any(fields_for(step, Role.COUNTY).override for step in Step if step != Step.DATA_COMPARE)


def test_a_step_form_becomes_the_stores_arguments() -> None:
    got = parse_step("APPLY", {"on": "2025-03-01", "note": "  村委会代为申请  ", "authorised": "1", "override": ""},
                     today=TODAY)
    assert (got.step, got.on, got.note, got.authorised, got.override) == (
        Step.APPLY, dt.date(2025, 3, 1), "村委会代为申请", True, None)
    got = parse_step("DATA_COMPARE", {"override": "公安局系统升级, 已电话核实"}, today=TODAY)
    assert (got.on, got.note, got.authorised, got.override) == (TODAY, None, False, "公安局系统升级, 已电话核实")
    assert parse_step("LABEL", {"on": TODAY.isoformat()}, today=TODAY).on == TODAY


@pytest.mark.parametrize("step, form, words", [
    ("JUMP", {}, "未知的步骤"),
    ("APPLY", {"on": "2025/03/01"}, "YYYY-MM-DD"),
    ("APPLY", {"on": "2025-02-30"}, "不是有效日期"),
    ("APPLY", {"on": "2025-03-11"}, "之后"),
    ("APPLY", {"note": "字" * 2001}, "备注过长"),
    ("DATA_COMPARE", {"override": "理" * 501}, "理由过长"),
])
def test_bad_step_input_is_one_line(step: str, form: dict[str, str], words: str) -> None:
    with pytest.raises(FormError) as caught:
        parse_step(step, form, today=TODAY)
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_labels_are_chinese() -> None:
    assert step_label("APPLY") == "申请" and step_label(None) == "尚无步骤" and step_label("ODD") == "ODD"
    assert all(step_label(step.value) == STEP_LABELS[step] for step in Step)


def test_failed_log_ins_are_throttled_per_name() -> None:
    now = [1000.0]
    throttle = LoginThrottle(limit=3, window=600, clock=lambda: now[0])
    for _ in range(2):
        throttle.failed("cun")
    assert throttle.blocked_for("cun") == 0
    throttle.failed("cun")
    assert throttle.blocked_for("cun") == 600 and throttle.blocked_for("xiang") == 0
    now[0] += 599
    assert throttle.blocked_for("cun") == 1
    now[0] += 1
    assert throttle.blocked_for("cun") == 0  # the oldest failure left the window
    throttle.failed("cun")
    throttle.succeeded("cun")
    assert throttle.blocked_for("cun") == 0 and "cun" not in throttle._failures
