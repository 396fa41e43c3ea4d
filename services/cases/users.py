"""Case workers: who they are, where they work, how their password is checked. Pure apart from the hash.

A user has a role (village, township, county, bureau: services.cases.workflow.Role) and a region: the prefix of the
12-digit statistical division codes of the villages they see and act on. A village user's region is its 12-digit
village code, a township user's the 9-digit township code, a county user's the 6-digit county code; the bureau's
is "6527", the whole of Bortala Prefecture. Every region lies inside the prefecture (starts with 6527).

Passwords are at least MIN_PASSWORD characters, not blanks, not one character repeated and not only digits; they
are stored as an argon2id hash (argon2-cffi's PasswordHasher,
its default parameters, RFC 9106's low-memory profile); the hash string carries its own parameters and salt.
"""
from __future__ import annotations

from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from schemas.errors import ConfigError
from services.cases.workflow import Role

__all__ = ["UserView", "PREFECTURE", "MIN_PASSWORD", "REGION_DIGITS", "SYSTEM_ACTORS", "SYSTEM_PREFIX", "parse_role",
           "check_region", "check_name", "check_password", "hash_password", "verify_password", "dummy_hash",
           "covers", "county_of", "township_of"]

PREFECTURE = "6527"  # 博尔塔拉蒙古自治州
MIN_PASSWORD = 10
REGION_DIGITS: dict[Role, int] = {Role.VILLAGE: 12, Role.TOWNSHIP: 9, Role.COUNTY: 6, Role.BUREAU: 4}
_REGION_KIND = {12: "village", 9: "township", 6: "county", 4: "prefecture"}
_HASHER = PasswordHasher()  # argon2id
# the names the system records as actors (escalations, roster imports, cadre visits, `--as-system`, unknown log-in
# names): no user may be called so, or the audit log could not tell a person from the system
SYSTEM_PREFIX = "system:"
SYSTEM_ACTORS = ("casefeed", "povwatch-cli", "cadre-visit", "system", "anonymous", "relay")
_DUMMY_HASH: list[str] = []  # made once, on first use (hashing takes a moment)


@dataclass(frozen=True)
class UserView:
    """A case worker as the case DB holds them (no password hash)."""

    id: int
    name: str
    role: Role
    region: str
    active: bool = True
    system: bool = False  # `--as-system`: the command line's operator acting with this user's role and region

    @property
    def actor(self) -> str:
        """The name the history and the audit log record: the user's, or "system:NAME" for `--as-system`."""
        return f"{SYSTEM_PREFIX}{self.name}"[:64] if self.system else self.name


def parse_role(text: str) -> Role:
    try:
        return Role(text.strip().lower())
    except ValueError:
        raise ConfigError(f"unknown role {text!r} (village, township, county or bureau)") from None


def check_name(name: str) -> str:
    """A user name: 1 to 64 characters, no spaces or control characters."""
    if not name or len(name) > 64 or any(ch.isspace() or not ch.isprintable() for ch in name):
        raise ConfigError(f"user name {name[:64]!r}: 1 to 64 characters without spaces")
    lowered = name.lower()
    if lowered in SYSTEM_ACTORS or lowered.startswith("system:") or lowered.startswith("povwatch"):
        raise ConfigError(f"user name {name!r} is reserved for the system's own actors ({', '.join(SYSTEM_ACTORS)}, "
                          "system:..., povwatch...)")
    return name


def check_region(role: Role, region: str) -> str:
    """The region a user of `role` may have: village 12 digits, township 9, county 6, bureau 6527."""
    digits = REGION_DIGITS[role]
    if not region.isascii() or not region.isdigit() or len(region) not in _REGION_KIND:
        raise ConfigError(f"--region {region!r}: a 6-digit county, 9-digit township or 12-digit village code, "
                          f"or {PREFECTURE} for the bureau")
    if not region.startswith(PREFECTURE):
        raise ConfigError(f"--region {region}: not in Bortala Prefecture (codes start with {PREFECTURE})")
    if len(region) != digits:
        if role == Role.BUREAU:
            raise ConfigError(f"--region {region}: a bureau user's region is {PREFECTURE} (the whole prefecture)")
        raise ConfigError(f"--region {region} is a {_REGION_KIND[len(region)]} code; a {role} user needs a "
                          f"{digits}-digit {role} code")
    return region


def check_password(password: str) -> str:
    """A password a user may have: long enough and not trivially guessed (never quoted in the error)."""
    if len(password) < MIN_PASSWORD:
        raise ConfigError(f"the password must be at least {MIN_PASSWORD} characters")
    if not password.strip():
        raise ConfigError("the password is only blanks")
    if len(set(password)) == 1:
        raise ConfigError("the password is one character repeated")
    if password.strip().isdigit():
        raise ConfigError("the password is only digits")
    return password


def hash_password(password: str) -> str:
    return _HASHER.hash(check_password(password))


def verify_password(stored_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def dummy_hash() -> str:
    """A hash of the same kind as the users' that no typed password is checked to match: verifying a log-in of an
    unknown user name against it costs the same argon2 work as a known name's (the time does not tell)."""
    if not _DUMMY_HASH:
        _DUMMY_HASH.append(_HASHER.hash("povwatch: the hash of no user"))
    return _DUMMY_HASH[0]


def covers(region: str, village_code: str) -> bool:
    """Does a user of `region` see the village `village_code`?"""
    return village_code.startswith(region)


def county_of(village_code: str) -> str:
    return village_code[:6]


def township_of(village_code: str) -> str:
    return village_code[:9]
