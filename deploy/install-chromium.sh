#!/usr/bin/env bash
# Make Debian's `chromium` available for the web desk's browser test (tests/integration/test_desk_browser.py,
# driven by Playwright with executable_path=/usr/bin/chromium: Playwright's own browser downloads are never used),
# with a Chinese font (fonts-wqy-microhei, 1.6 MB) so the desk's pages and screenshot show Chinese, not boxes.
# Prints one line saying what it did.
#
# Idempotent: does nothing if a chromium binary is already there ($POVWATCH_CHROMIUM, /usr/bin/chromium, or
# `chromium` on PATH) and fontconfig knows a Chinese font. Otherwise, as root or through password-less sudo:
# `apt-get update` (stale lists may still do) and `apt-get install --no-install-recommends chromium
# fonts-wqy-microhei`. Fails with one line and the log's tail.
set -euo pipefail

found() {
  local candidate
  for candidate in "${POVWATCH_CHROMIUM:-}" /usr/bin/chromium "$(command -v chromium 2>/dev/null || true)"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

version() { "$1" --version 2>/dev/null | head -n 1 || echo "version unknown"; }
chinese_font() { command -v fc-list >/dev/null 2>&1 && [ -n "$(fc-list :lang=zh family 2>/dev/null | head -n 1)" ]; }

if bin=$(found) && chinese_font; then
  echo "install-chromium: chromium ($(version "$bin")) at $bin and a Chinese font already installed; nothing to do"
  exit 0
fi

log=$(mktemp /tmp/install-chromium.XXXXXX.log)
export DEBIAN_FRONTEND=noninteractive
if [ "$(id -u)" -eq 0 ]; then
  as_root() { "$@"; }
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  as_root() { sudo -n "$@"; }
else
  echo "install-chromium: FAILED: chromium is not installed and this user is neither root nor a password-less" \
    "sudoer (install Debian's chromium package, or set POVWATCH_CHROMIUM to a chromium binary)" >&2
  exit 1
fi

as_root apt-get update >>"$log" 2>&1 || true
if ! as_root apt-get install -y --no-install-recommends -o DPkg::Lock::Timeout=300 chromium fonts-wqy-microhei \
    >>"$log" 2>&1 || ! bin=$(found); then
  echo "install-chromium: FAILED: apt-get install chromium fonts-wqy-microhei did not give a chromium binary" \
    "(log: $log)" >&2
  tail -n 20 "$log" >&2 || true
  exit 1
fi
echo "install-chromium: installed Debian packages chromium ($(version "$bin")) at $bin and fonts-wqy-microhei"
rm -f "$log"
