"""`python -m services.dashboard_preview`: see services/dashboard_preview/render.py."""
from __future__ import annotations

import sys

from services.dashboard_preview.render import main

if __name__ == "__main__":
    sys.exit(main())
