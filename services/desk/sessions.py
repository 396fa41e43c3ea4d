"""The desk's sessions: a signed cookie holding who is logged in and the session's CSRF token. No I/O.

The cookie's value is signed and timestamped with itsdangerous (HMAC-SHA1 over the payload with a key derived
from the secret; a changed byte or another secret is refused): {"sid": random id, "csrf": random token,
"user": name or null}. Every visitor gets a session (anonymous until log-in) so that even the log-in form carries
a CSRF token; logging in issues a NEW session (new id and token: no session fixation), logging out revokes the
session id in this process (a copy of the cookie kept elsewhere is refused from then on) and deletes the cookie.
Sessions expire `max_age` seconds after they were issued, by the codec's `clock` (seconds since the epoch;
`time.time` unless a test passes its own).

CSRF: the token is in every form as a hidden field `csrf`; `csrf_ok` compares it in constant time.
"""
from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, TimestampSigner, URLSafeTimedSerializer

__all__ = ["COOKIE", "MAX_AGE", "DeskSession", "SessionCodec", "csrf_ok", "cookie_options", "LoginThrottle"]

COOKIE = "povwatch_desk"
MAX_AGE = 8 * 3600  # a working day
_REVOKED_KEPT = 100_000  # revoked session ids remembered (older ones have expired long before)


@dataclass(frozen=True)
class DeskSession:
    sid: str
    csrf: str
    user: str | None = None  # the logged-in user's name; None: not logged in


class _ClockedSigner(TimestampSigner):
    """itsdangerous' timestamp signer with the time taken from `clock` (it stamps and checks ages with it)."""

    def __init__(self, *args: Any, clock: Callable[[], float] = time.time, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clock = clock

    def get_timestamp(self) -> int:
        return int(self._clock())


class SessionCodec:
    """Issues, signs and reads sessions with one secret; remembers the ids revoked by logging out."""

    def __init__(self, secret: str, *, max_age: int = MAX_AGE, clock: Callable[[], float] = time.time) -> None:
        if len(secret) < 16:
            raise ValueError("the session secret must be at least 16 characters")
        self._serializer = URLSafeTimedSerializer(secret, salt="povwatch-desk-session", signer=_ClockedSigner,
                                                  signer_kwargs={"clock": clock})
        self.max_age = max_age
        self._revoked: OrderedDict[str, None] = OrderedDict()

    @staticmethod
    def new(user: str | None = None) -> DeskSession:
        return DeskSession(sid=secrets.token_urlsafe(18), csrf=secrets.token_urlsafe(32), user=user)

    def dump(self, session: DeskSession) -> str:
        return self._serializer.dumps({"sid": session.sid, "csrf": session.csrf, "user": session.user})

    def load(self, raw: str | None) -> DeskSession | None:
        """The session in a cookie value; None when there is none, or it is forged, expired, revoked or malformed."""
        if not raw:
            return None
        try:
            data: Any = self._serializer.loads(raw, max_age=self.max_age)
        except BadSignature:  # includes SignatureExpired and undecodable payloads
            return None
        if not isinstance(data, dict):
            return None
        sid, csrf, user = data.get("sid"), data.get("csrf"), data.get("user")
        if not isinstance(sid, str) or not isinstance(csrf, str) or not (user is None or isinstance(user, str)):
            return None
        if sid in self._revoked:
            return None
        return DeskSession(sid=sid, csrf=csrf, user=user)

    def revoke(self, session: DeskSession) -> None:
        self._revoked[session.sid] = None
        while len(self._revoked) > _REVOKED_KEPT:
            self._revoked.popitem(last=False)


def csrf_ok(session: DeskSession | None, presented: str | None) -> bool:
    """The form's token is the session's (constant-time comparison)."""
    if session is None or not presented:
        return False
    return hmac.compare_digest(session.csrf.encode("utf-8"), presented.encode("utf-8", "replace"))


def cookie_options(*, secure: bool, max_age: int = MAX_AGE) -> dict[str, Any]:
    """Starlette's set_cookie keyword arguments for the session cookie."""
    return {"max_age": max_age, "path": "/", "httponly": True, "samesite": "lax", "secure": secure}


class LoginThrottle:
    """Failed log-ins per user name: after `limit` failures within `window` seconds, that name is refused for the
    rest of the window (guessing passwords one name at a time costs hours). Kept in this process only."""

    def __init__(self, *, limit: int = 5, window: float = 900.0, clock: Callable[[], float] = time.monotonic,
                 names_kept: int = 10_000) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._names_kept = names_kept
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, name: str) -> deque[float]:
        failures = self._failures.get(name, deque())
        cutoff = self._clock() - self.window
        while failures and failures[0] <= cutoff:
            failures.popleft()
        return failures

    def blocked_for(self, name: str) -> float:
        """Seconds until `name` may try again (0: now)."""
        failures = self._recent(name)
        if len(failures) < self.limit:
            return 0.0
        return max(0.0, failures[-self.limit] + self.window - self._clock())

    def failed(self, name: str) -> None:
        failures = self._recent(name)
        failures.append(self._clock())
        self._failures[name] = failures
        self._failures.move_to_end(name)
        while len(self._failures) > self._names_kept:
            self._failures.popitem(last=False)

    def succeeded(self, name: str) -> None:
        self._failures.pop(name, None)
