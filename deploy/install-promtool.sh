#!/usr/bin/env bash
# Make `promtool` (checks deploy/prometheus/ in tests/e2e) and the `prometheus` server binary (scrapes a demo run
# for the dashboard preview's screenshot, tests/integration/test_dashboard_screenshot.py) available; prints one
# line saying what it did. The server is never started by this script nor by the package.
#
# Idempotent: does nothing if promtool and prometheus are already on PATH.
# Otherwise installs Debian's `prometheus` package (which ships /usr/bin/promtool) with a temporary
# policy-rc.d that returns 101, so the package's postinst does not start a Prometheus server on :9090
# (it would on a host whose init runs services); on a systemd host the unit is also disabled, so it does
# not start at the next boot either.
# Any existing policy-rc.d is put back afterwards. If that install fails,
# or with --extract, it downloads the .deb and extracts only promtool and prometheus into $PROMTOOL_BIN
# (default /usr/local/bin as root, ~/.local/bin otherwise), with no postinst and no service at all.
set -euo pipefail

mode=install
case "${1:-}" in
  "") ;;
  --extract) mode=extract ;;
  *) echo "usage: $0 [--extract]" >&2; exit 2 ;;
esac

if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
  echo "install-promtool: promtool and prometheus already on PATH ($(command -v promtool)); nothing to do"
  exit 0
fi

log=$(mktemp /tmp/install-promtool.XXXXXX.log)
export DEBIAN_FRONTEND=noninteractive

# as_root CMD...: run CMD as root (directly, or through password-less sudo); root=no when neither works
if [ "$(id -u)" -eq 0 ]; then
  root=yes; as_root() { "$@"; }
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  root=yes; as_root() { sudo -n "$@"; }
else
  root=no; as_root() { "$@"; }
  mode=extract
fi

fail() {
  echo "install-promtool: FAILED: $1 (log: $log)" >&2
  tail -n 20 "$log" >&2 || true
  exit 1
}

# --- installing the package, with services kept from starting -------------------------------------------
policy=/usr/sbin/policy-rc.d
policy_saved=""
restore_policy() {
  if [ -n "$policy_saved" ]; then
    as_root mv -f "$policy_saved" "$policy"
  else
    as_root rm -f "$policy"
  fi
}

install_package() {
  as_root apt-get update >>"$log" 2>&1 || true  # stale lists may still do
  if [ -e "$policy" ]; then
    policy_saved="$policy.install-promtool.$$"
    as_root mv -f "$policy" "$policy_saved"
  fi
  trap restore_policy EXIT
  printf '#!/bin/sh\n# written by deploy/install-promtool.sh for the duration of one install\nexit 101\n' \
    | as_root tee "$policy" >/dev/null
  as_root chmod 755 "$policy"
  local rc=0
  as_root apt-get install -y --no-install-recommends -o DPkg::Lock::Timeout=300 prometheus >>"$log" 2>&1 || rc=$?
  restore_policy
  trap - EXIT
  if [ "$rc" -eq 0 ] && [ -d /run/systemd/system ]; then  # systemd is running: keep the unit off at boot
    as_root systemctl disable prometheus >>"$log" 2>&1 || true
  fi
  [ "$rc" -eq 0 ] && command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1
}

# --- extracting promtool alone from the .deb -----------------------------------------------------------
extract_promtool() {
  local bin tmp deb
  if [ -n "${PROMTOOL_BIN:-}" ]; then
    bin=$PROMTOOL_BIN
  elif [ "$root" = yes ]; then
    bin=/usr/local/bin
  else
    bin=$HOME/.local/bin
  fi
  tmp=$(mktemp -d /tmp/install-promtool.XXXXXX)
  if [ "$root" = yes ]; then
    as_root apt-get update >>"$log" 2>&1 || true
  fi
  (cd "$tmp" && apt-get download prometheus >>"$log" 2>&1) || { rm -rf "$tmp"; return 1; }
  deb=$(ls "$tmp"/prometheus_*.deb 2>/dev/null | head -n 1)
  [ -n "$deb" ] || { rm -rf "$tmp"; return 1; }
  dpkg-deb -x "$deb" "$tmp/root" >>"$log" 2>&1 || { rm -rf "$tmp"; return 1; }
  [ -x "$tmp/root/usr/bin/promtool" ] || { rm -rf "$tmp"; return 1; }
  local tool
  for tool in promtool prometheus; do
    as_root install -D -m 755 "$tmp/root/usr/bin/$tool" "$bin/$tool" >>"$log" 2>&1 || { rm -rf "$tmp"; return 1; }
  done
  rm -rf "$tmp"
  "$bin/promtool" --version >>"$log" 2>&1 || return 1
  EXTRACTED_TO="$bin/promtool"
}

version() { "$1" --version 2>&1 | head -n 1; }

if [ "$mode" = install ]; then
  if install_package; then
    echo "install-promtool: installed Debian package prometheus ($(version promtool))" \
      "at $(command -v promtool); service start suppressed"
    rm -f "$log"
    exit 0
  fi
  echo "install-promtool: apt-get install prometheus failed, extracting promtool from the .deb instead" >>"$log"
fi

extract_promtool || fail "could not install the prometheus package nor extract promtool from its .deb"
case ":$PATH:" in
  *":$(dirname "$EXTRACTED_TO"):"*) note="" ;;
  *) note="; add $(dirname "$EXTRACTED_TO") to PATH" ;;
esac
echo "install-promtool: extracted promtool and prometheus ($(version "$EXTRACTED_TO")) from the prometheus .deb to $EXTRACTED_TO$note"
rm -f "$log"
