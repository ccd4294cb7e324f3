"""Write the API's OpenAPI spec to ``docs/openapi.json`` (``make openapi``).

The committed file lets other teams generate clients without running bulktag; a unit
test fails when it drifts from the app, so regenerate it whenever a route changes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from producer.api.app import create_api
from tasks.settings import Settings

SPEC_PATH = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def spec_json() -> str:
    """The spec as stable, reviewable JSON (sorted keys, two-space indent)."""
    spec = create_api(Settings()).openapi()  # routes do not depend on settings
    return json.dumps(spec, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    out = Path(argv[0]) if argv else SPEC_PATH
    out.write_text(spec_json(), encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
