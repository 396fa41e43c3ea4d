#!/usr/bin/env bash
# Sets povwatch up on a fresh machine (idempotent): a virtualenv with the pinned Python packages, promtool, chromium
# and systemd-analyze.
# The Kafka broker's jars are fetched from Maven Central by `povwatch kafka up` on first use (cached per machine).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
  echo "setup: Python 3.11 or newer is required (tried: $PYTHON)" >&2
  exit 1
fi
for tool in java mvn; do
  command -v "$tool" >/dev/null || { echo "setup: '$tool' not found: Java 17+ and Maven are needed for the local Kafka broker" >&2; exit 1; }
done

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -c constraints.txt -e '.[test]'
bash deploy/install-promtool.sh
bash deploy/install-chromium.sh  # the web desk's browser test (Debian's chromium, driven by Playwright)
bash deploy/install-systemd-analyze.sh  # `systemd-analyze verify` on deploy/systemd/ (tests/unit/test_deploy_systemd.py)
echo "setup: ready (.venv/bin/povwatch)"
