"""`python -m devstack demo`: a guided tour of Registrar against a running stack (body to come)."""

from __future__ import annotations

import json
from typing import Any


def main(endpoints: dict[str, Any]) -> int:
    """Hook for the demo; `endpoints` is .devstack/endpoints.json. For now it shows where things are."""
    shown = {key: value for key, value in endpoints.items() if key != "clientSecret"}
    print(json.dumps(shown, indent=2))
    return 0
