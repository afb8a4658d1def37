"""Export the JSON Schema of every event and of the analysis contract.

``python -m contracts.schemas`` rewrites ``contracts/schemas/``; a test fails when the
checked-in files and the models disagree.
"""

import json
import sys
from pathlib import Path

from pydantic import BaseModel

from contracts.analysis import AnalysisRequest, AnalysisWebhook
from contracts.events import EVENT_TYPES

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"


def documents() -> dict[str, dict[str, object]]:
    """File name → JSON Schema, for every model other services rely on."""
    models: dict[str, type[BaseModel]] = {t: m for t, m in EVENT_TYPES.items()}
    models["analysis.request"] = AnalysisRequest
    models["analysis.webhook"] = AnalysisWebhook
    return {f"{name}.json": model.model_json_schema() for name, model in models.items()}


def render(schema: dict[str, object]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main() -> None:
    SCHEMA_DIR.mkdir(exist_ok=True)
    wanted = documents()
    for stale in set(p.name for p in SCHEMA_DIR.glob("*.json")) - wanted.keys():
        (SCHEMA_DIR / stale).unlink()
    for name, schema in wanted.items():
        (SCHEMA_DIR / name).write_text(render(schema))
    print(f"wrote {len(wanted)} schemas to {SCHEMA_DIR}", file=sys.stderr)


if __name__ == "__main__":
    main()
