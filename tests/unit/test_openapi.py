"""The committed OpenAPI spec is the app's current one, and it documents the contract."""

from __future__ import annotations

import json

from producer.api.openapi import SPEC_PATH, spec_json


def test_committed_spec_matches_the_app() -> None:
    assert SPEC_PATH.read_text(encoding="utf-8") == spec_json(), (
        "docs/openapi.json is stale: run `make openapi` and commit it"
    )


def test_spec_has_every_route_and_bearer_auth() -> None:
    spec = json.loads(spec_json())
    assert set(spec["paths"]) == {
        "/jobs",
        "/jobs/{job_id}",
        "/jobs/{job_id}/results",
        "/jobs/{job_id}/records",
        "/jobs/{job_id}/thumbs/{index}",
        "/jobs/{job_id}/retry",
        "/uploads",
        "/models",
        "/healthz",
        "/search",
    }
    assert set(spec["paths"]["/jobs"]) == {"get", "post"}
    assert set(spec["paths"]["/jobs/{job_id}"]) == {"get", "delete"}
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert "security" not in spec["paths"]["/healthz"]["get"]
    assert "security" in spec["paths"]["/jobs/{job_id}"]["get"]
    assert "security" in spec["paths"]["/search"]["get"]
    ndjson = spec["paths"]["/jobs/{job_id}/results"]["get"]["responses"]["200"]["content"]
    assert "application/x-ndjson" in ndjson
    upload = spec["paths"]["/uploads"]["post"]
    assert "security" in upload
    form = upload["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["required"] == ["files"]
    assert form["properties"]["files"]["items"]["format"] == "binary"
    assert {"201", "413", "422"} <= set(upload["responses"])
