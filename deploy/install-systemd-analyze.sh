#!/usr/bin/env bash
# Make `systemd-analyze` available for the check of deploy/systemd/ (tests/unit/test_deploy_systemd.py runs
# `systemd-analyze verify` on every unit). Prints one line saying what it did.
#
# Idempotent: does nothing if systemd-analyze and the system's unit directory are there. Otherwise, as root or
# through password-less sudo: `apt-get update` (stale lists may still do) and `apt-get install
# --no-install-recommends systemd` (Debian's package; nothing is started: containers run without systemd as PID 1).
set -euo pipefail

if command -v systemd-analyze >/dev/null 2>&1 && [ -d /usr/lib/systemd/system ]; then
  echo "install-systemd-analyze: $(systemd-analyze --version | head -n 1) already installed; nothing to do"
  exit 0
fi

log=$(mktemp /tmp/install-systemd.XXXXXX.log)
export DEBIAN_FRONTEND=noninteractive
if [ "$(id -u)" -eq 0 ]; then
  as_root() { "$@"; }
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  as_root() { sudo -n "$@"; }
else
  echo "install-systemd-analyze: FAILED: systemd-analyze is missing and this user is neither root nor a" \
    "password-less sudoer (install Debian's systemd package)" >&2
  exit 1
fi
as_root apt-get update >>"$log" 2>&1 || true
if ! as_root apt-get install -y --no-install-recommends -o DPkg::Lock::Timeout=300 systemd >>"$log" 2>&1 \
    || ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "install-systemd-analyze: FAILED: apt-get install systemd did not give systemd-analyze (log: $log)" >&2
  tail -n 20 "$log" >&2 || true
  exit 1
fi
echo "install-systemd-analyze: installed Debian's systemd ($(systemd-analyze --version | head -n 1))"
rm -f "$log"
