"""`povwatch demo --secure` end to end (issue #13, item 4): the whole demo on a secured broker, the roster, every
department's connector, the monitor, the intake API and the case feed each on its own certificate with only the
ACLs its role derives; the closing table must be exact (a missing grant shows as a refused party, a mismatch).

A broker of its own on the session port + 540; the monitor's /metrics and the intake API on + 560 and + 561.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

BASE = int(os.environ.get("POVWATCH_TEST_BROKER_PORT", "19092"))


def test_the_secured_demo_ends_exact(tmp_path: Path) -> None:
    env = {**os.environ, "POVWATCH_BOOTSTRAP": f"127.0.0.1:{BASE + 540}",
           "POVWATCH_MONITOR_METRICS_PORT": str(BASE + 560), "POVWATCH_INTAKE_PORT": str(BASE + 561),
           "POVWATCH_SECURITY_PROTOCOL": "PLAINTEXT"}
    result = subprocess.run([sys.executable, "-m", "services.cli", "demo", "--secure", "--households", "300",
                             "--dir", str(tmp_path / "demo")], env=env, capture_output=True, text=True, timeout=540)
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
    assert "secured (TLS, client certificates, ACLs)" in out
    parties = re.search(r"ACLs for (\d+) parties, each on its own certificate: (\d+) granted", out)
    assert parties is not None and int(parties.group(1)) > 20 and int(parties.group(2)) > 100, out[:2000]
    total = re.search(r"^total\s+(\d+)\s+(\d+)\s+ok$", out, re.M)
    assert total is not None and total.group(1) == total.group(2) and int(total.group(1)) > 0, out[-3000:]
    assert out.rstrip().splitlines()[-3].endswith("-> OK")
    assert "MISMATCH" not in out and "not authorized" not in result.stderr
    # every party's certificate, issued by the demo's CA (the register lists them all, none revoked)
    listed = subprocess.run([sys.executable, "-m", "services.cli", "pki", "list", "--dir",
                             str(tmp_path / "demo" / "pki")], env=env, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    for party in ("admin", "roster", "monitor", "intake", "casefeed", "public-security", "pboc"):
        assert re.search(rf"^{re.escape(party)}\s", listed.stdout, re.M), listed.stdout
