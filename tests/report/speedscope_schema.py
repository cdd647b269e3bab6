"""speedscope's file format as a JSON schema (draft 6), for validating what we write.

Transcribed from the schema speedscope publishes for its file format (``$schema`` of every
file: SCHEMA_URL), which its TypeScript spec generates: a file has ``shared.frames`` and
``profiles``; a sampled profile has ``samples`` (stacks of frame indices) and ``weights``;
an evented one has open/close ``events``. Kept here because tests run without a network.
"""

from __future__ import annotations

from typing import Any

UNITS = ["bytes", "microseconds", "milliseconds", "nanoseconds", "none", "seconds"]


def _obj(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required}


_NUMBER = {"type": "number"}
_STRING = {"type": "string"}


def _event(kind: str) -> dict[str, Any]:
    return _obj(
        {"type": {"type": "string", "enum": [kind]}, "frame": _NUMBER, "at": _NUMBER},
        ["at", "frame", "type"],
    )


SPEEDSCOPE_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-06/schema#",
    "definitions": {
        "Frame": _obj(
            {"name": _STRING, "file": _STRING, "line": _NUMBER, "col": _NUMBER}, ["name"]
        ),
        "EventedProfile": _obj(
            {
                "type": {"type": "string", "enum": ["evented"]},
                "name": _STRING,
                "unit": {"type": "string", "enum": UNITS},
                "startValue": _NUMBER,
                "endValue": _NUMBER,
                "events": {"type": "array", "items": {"anyOf": [_event("O"), _event("C")]}},
            },
            ["endValue", "events", "name", "startValue", "type", "unit"],
        ),
        "SampledProfile": _obj(
            {
                "type": {"type": "string", "enum": ["sampled"]},
                "name": _STRING,
                "unit": {"type": "string", "enum": UNITS},
                "startValue": _NUMBER,
                "endValue": _NUMBER,
                "samples": {"type": "array", "items": {"type": "array", "items": _NUMBER}},
                "weights": {"type": "array", "items": _NUMBER},
            },
            ["endValue", "name", "samples", "startValue", "type", "unit", "weights"],
        ),
    },
    **_obj(
        {
            "$schema": {
                "type": "string",
                "enum": ["https://www.speedscope.app/file-format-schema.json"],
            },
            "shared": _obj(
                {"frames": {"type": "array", "items": {"$ref": "#/definitions/Frame"}}},
                ["frames"],
            ),
            "profiles": {
                "type": "array",
                "items": {
                    "anyOf": [
                        {"$ref": "#/definitions/EventedProfile"},
                        {"$ref": "#/definitions/SampledProfile"},
                    ]
                },
            },
            "name": _STRING,
            "activeProfileIndex": _NUMBER,
            "exporter": _STRING,
        },
        ["$schema", "profiles", "shared"],
    ),
}
