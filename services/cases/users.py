"""Case workers: who they are, where they work, how their password is checked. Pure apart from the hash.

A user has a role (village, township, county, bureau: services.cases.workflow.Role) and a region: the prefix of the
12-digit statistical division codes of the villages they see and act on. A village user's region is its 12-digit
village code, a township user's the 9-digit township code, a county user's the 6-digit county code; the bureau's
is "6527", the whole of Bortala Prefecture. Every region lies inside the prefecture (starts with 6527).

Passwords are at least MIN_PASSWORD characters and stored as an argon2id hash (argon2-cffi's PasswordHasher,
its default parameters, RFC 9106's low-memory profile); the hash string carries its own parameters and salt.
"""
from __future__ import annotations

from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from schemas.errors import ConfigError
from services.cases.workflow import Role

__all__ = ["UserView", "PREFECTURE", "MIN_PASSWORD", "REGION_DIGITS", "parse_role", "check_region", "check_name",
           "check_password", "hash_password", "verify_password", "covers", "county_of", "township_of"]

PREFECTURE = "6527"  # 博尔塔拉蒙古自治州
MIN_PASSWORD = 10
REGION_DIGITS: dict[Role, int] = {Role.VILLAGE: 12, Role.TOWNSHIP: 9, Role.COUNTY: 6, Role.BUREAU: 4}
_REGION_KIND = {12: "village", 9: "township", 6: "county", 4: "prefecture"}
_HASHER = PasswordHasher()  # argon2id


@dataclass(frozen=True)
class UserView:
    """A case worker as the case DB holds them (no password hash)."""

    id: int
    name: str
    role: Role
    region: str
    active: bool = True


def parse_role(text: str) -> Role:
    try:
        return Role(text.strip().lower())
    except ValueError:
        raise ConfigError(f"unknown role {text!r} (village, township, county or bureau)") from None


def check_name(name: str) -> str:
    """A user name: 1 to 64 characters, no spaces or control characters."""
    if not name or len(name) > 64 or any(ch.isspace() or not ch.isprintable() for ch in name):
        raise ConfigError(f"user name {name!r}: 1 to 64 characters without spaces")
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
    if len(password) < MIN_PASSWORD:
        raise ConfigError(f"the password must be at least {MIN_PASSWORD} characters")
    return password


def hash_password(password: str) -> str:
    return _HASHER.hash(check_password(password))


def verify_password(stored_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def covers(region: str, village_code: str) -> bool:
    """Does a user of `region` see the village `village_code`?"""
    return village_code.startswith(region)


def county_of(village_code: str) -> str:
    return village_code[:6]


def township_of(village_code: str) -> str:
    return village_code[:9]
