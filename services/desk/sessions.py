"""The desk's sessions: a signed cookie holding who is logged in and the session's CSRF token. No I/O.

The cookie's value is signed and timestamped with itsdangerous (HMAC-SHA1 over the payload with a key derived
from the secret; a changed byte or another secret is refused): {"sid": random id, "csrf": random token,
"user": name or null}. Every visitor gets a session (anonymous until log-in) so that even the log-in form carries
a CSRF token; logging in issues a NEW session (new id and token: no session fixation) and stores it in the case DB
(services/casedb/sessions.py: a hash of its id, the user, its expiry); a logged-in cookie is honoured only while
that row exists, so logging out, a password change and `povwatch users disable` end sessions on every desk process,
across restarts. Sessions expire `max_age` seconds after they were issued, by the codec's `clock` (seconds since
the epoch; `time.time` unless a test passes its own).

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

__all__ = ["COOKIE", "MAX_AGE", "NAME_KEPT", "DeskSession", "SessionCodec", "csrf_ok", "cookie_options",
           "LoginThrottle"]

COOKIE = "povwatch_desk"
MAX_AGE = 8 * 3600  # a working day
_REVOKED_KEPT = 100_000  # revoked anonymous session ids remembered (older ones have expired long before)
NAME_KEPT = 64  # what the throttle keeps of a typed user name (a user name has at most 64 characters)
_PER_KEY = 64  # failures remembered per key of the throttle


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


class _Failures:
    """Recent failures per key (at most `kept` keys, the least recently failed dropped first; at most `_PER_KEY`
    timestamps a key): bounded memory whatever is sent."""

    def __init__(self, kept: int) -> None:
        self.kept = kept
        self.rows: OrderedDict[Any, deque[float]] = OrderedDict()

    def recent(self, key: Any, cutoff: float) -> deque[float]:
        failures = self.rows.get(key)
        if failures is None:
            return deque()
        while failures and failures[0] <= cutoff:
            failures.popleft()
        if not failures:
            del self.rows[key]
        return failures

    def add(self, key: Any, at: float, cutoff: float) -> None:
        failures = self.recent(key, cutoff) or deque(maxlen=_PER_KEY)
        failures.append(at)
        self.rows[key] = failures
        self.rows.move_to_end(key)
        while len(self.rows) > self.kept:
            self.rows.popitem(last=False)


class LoginThrottle:
    """Failed log-ins slow the next try down; they never lock anyone out. Kept in this process only.

    Three counts over `window` seconds: per (name, client address), per address (whatever the names: flooding
    other names does not wash a name's failures away) and per name (guessing one name from many addresses).
    Past `free` failures of a (name, address) - `address_free` of an address, `name_free` of a name - the next try
    waits `base_delay` seconds, doubling with each further failure up to `max_delay`: a short delay, never a lock.
    A name's usual addresses (where it logged in successfully) are not slowed by the failures of the name or of
    other addresses, so an attacker elsewhere cannot keep the real user out. Names are cut to 64 characters; every
    table keeps at most `names_kept` entries (bounded memory)."""

    def __init__(self, *, free: int = 5, address_free: int = 20, name_free: int = 50, base_delay: float = 1.0,
                 max_delay: float = 60.0, window: float = 900.0, clock: Callable[[], float] = time.monotonic,
                 names_kept: int = 10_000) -> None:
        self.free, self.address_free, self.name_free = free, address_free, name_free
        self.base_delay, self.max_delay, self.window = base_delay, max_delay, window
        self._clock = clock
        self._pairs = _Failures(names_kept)
        self._addresses = _Failures(names_kept)
        self._names = _Failures(names_kept)
        self._usual: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._usual_kept = names_kept

    def _delay(self, failures: deque[float], free: int) -> float:
        """Seconds still to wait after these failures (0: none)."""
        if len(failures) < free:
            return 0.0
        delay = min(self.base_delay * 2.0 ** (len(failures) - free), self.max_delay)
        return max(0.0, failures[-1] + delay - self._clock())

    def wait(self, name: str, address: str) -> float:
        """Seconds until `name` may try again from `address` (0: now)."""
        name = name[:NAME_KEPT]
        cutoff = self._clock() - self.window
        waits = [self._delay(self._pairs.recent((name, address), cutoff), self.free)]
        if (name, address) not in self._usual:
            waits.append(self._delay(self._addresses.recent(address, cutoff), self.address_free))
            waits.append(self._delay(self._names.recent(name, cutoff), self.name_free))
        return max(waits)

    def failed(self, name: str, address: str) -> None:
        name = name[:NAME_KEPT]
        now = self._clock()
        cutoff = now - self.window
        self._pairs.add((name, address), now, cutoff)
        self._addresses.add(address, now, cutoff)
        self._names.add(name, now, cutoff)

    def succeeded(self, name: str, address: str) -> None:
        name = name[:NAME_KEPT]
        self._pairs.rows.pop((name, address), None)
        self._usual[(name, address)] = None
        self._usual.move_to_end((name, address))
        while len(self._usual) > self._usual_kept:
            self._usual.popitem(last=False)

    def size(self) -> int:
        """Entries held in all tables."""
        return len(self._pairs.rows) + len(self._addresses.rows) + len(self._names.rows) + len(self._usual)

    def longest_name(self) -> int:
        names = [n for n, _ in self._pairs.rows] + list(self._names.rows) + [n for n, _ in self._usual]
        return max((len(n) for n in names), default=0)
