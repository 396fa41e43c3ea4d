"""`povwatch desk`: the web desk on uvicorn, over the case DB (POVWATCH_CASE_DB).

Start-up problems are one-line errors (exit 2): the port taken, the case DB unusable, a session secret that is
too short. The socket is bound first, so a port in use is reported at once. Without POVWATCH_DESK_SECRET a
random secret is made for this run (with a warning: sessions do not survive a restart, and two desks behind one
address would refuse each other's cookies). Cookies are `Secure` unless POVWATCH_DESK_INSECURE_COOKIES=1, which
is for a desk served over plain HTTP on this machine (a browser sends no Secure cookie to http://127.0.0.1) and is
refused unless POVWATCH_DESK_HOST is a loopback address (session cookies never cross a network in clear).
Stops cleanly (exit 0) on SIGTERM or Ctrl-C.
"""
from __future__ import annotations

import ipaddress
import logging
import secrets
import sys

import uvicorn

from plumbing.http_serving import Server, bind
from plumbing.settings import Settings
from schemas.errors import ConfigError
from services.casedb.database import open_database
from services.cases.screening_store import Screening
from services.cases.store import Cases
from services.desk.app import create_app

__all__ = ["run_desk", "session_secret", "check_cookie_policy", "MIN_SECRET"]

MIN_SECRET = 32


def session_secret(settings: Settings) -> str:
    """POVWATCH_DESK_SECRET, or a random one for this run (with a warning on stderr)."""
    if settings.desk_secret is None or not settings.desk_secret.get_secret_value():
        print("povwatch desk: WARNING: POVWATCH_DESK_SECRET is not set; using a random session secret for this run "
              "(everyone must log in again after a restart)", file=sys.stderr, flush=True)
        return secrets.token_urlsafe(48)
    secret = settings.desk_secret.get_secret_value()
    if len(secret) < MIN_SECRET:
        raise ConfigError(f"POVWATCH_DESK_SECRET must be at least {MIN_SECRET} characters (a random string, e.g. "
                          "from `python -c 'import secrets; print(secrets.token_urlsafe(48))'`)")
    return secret


def check_cookie_policy(host: str, *, insecure: bool) -> None:
    """Cookies without `Secure` only on a loopback address (127.0.0.0/8, ::1, localhost): ConfigError otherwise."""
    if not insecure:
        return
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigError(f"POVWATCH_DESK_INSECURE_COOKIES=1 is for a desk on this machine only, but "
                          f"POVWATCH_DESK_HOST is {host!r}, not a loopback address: serve the desk over HTTPS (a "
                          "reverse proxy) with Secure cookies, or listen on 127.0.0.1")


def run_desk(settings: Settings) -> None:
    """Serve until SIGTERM or Ctrl-C."""
    check_cookie_policy(settings.desk_host, insecure=settings.desk_insecure_cookies)
    secret = session_secret(settings)
    sock = bind(settings.desk_host, settings.desk_port, "the desk")
    try:
        store = open_database(settings.case_db)
        try:
            cases = Cases.from_settings(store, settings)
            app = create_app(cases, secret=secret, secure_cookies=not settings.desk_insecure_cookies,
                             today=cases.today, screening=Screening.from_settings(store, settings))
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
            server = Server(uvicorn.Config(app, log_level="info", access_log=True, lifespan="off"))
            host, port = sock.getsockname()[:2]
            print(f"povwatch desk: serving on http://{host}:{port} (case DB {_shown(settings.case_db)}; cookies "
                  + ("NOT Secure: plain HTTP on this machine only" if settings.desk_insecure_cookies else "Secure")
                  + ")", file=sys.stderr, flush=True)
            server.run(sockets=[sock])
        finally:
            store.close()
    finally:
        sock.close()


def _shown(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - only for display; open_database has already validated it
        return "?"
