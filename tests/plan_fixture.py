"""A realistic 21-day plan as a dict, shared by the tests of the ramp and of the preview.

It is NOT ``plans/standard-21d.yaml``: it has that plan's schedule, ramp and risk rules, but its own pacing
(gaps of 40s..6m, at most 30 an hour, the default typing) and no audience or content, so no file is read.
"""

from __future__ import annotations

from typing import Any

RAMP_21D: dict[str, Any] = {
    "name": "ramp-21d",
    "schedule": {
        "windows": [
            {"days": "mon-fri", "hours": "09:00-12:30"},
            {"days": "mon-fri", "hours": "14:00-19:00"},
            {"days": "sat", "hours": "10:00-14:00"},
        ],
        "rest_days": ["sun"],
    },
    "ramp": {
        "steps": [
            {"days": "1-3", "volume": 8},
            {"days": "4-7", "volume": "15..40"},
            {"days": "8-14", "volume": "50..150", "curve": "exponential"},
            {"days": "15-21", "volume": 200},
        ],
        "after": "hold",
    },
    "pacing": {"gap": "40s..6m", "max_per_hour": 30, "max_new_contacts_per_day": 10},
    "risk": {
        "stale_after": "36h",
        "rules": [
            {"when": {"overall": 1}, "do": "pause"},
            {"when": {"lifetime": 1}, "do": {"cap": 50}},
            {"when": {"response_rate": 1}, "do": {"throttle": 0.5}},
            {"when": {"response_rate": 2}, "do": "hold"},
            {"when": {"contacts": 1}, "do": {"max_new_contacts": 3}},
            {"when": {"quality": ["yellow"]}, "do": {"throttle": 0.5}},
            {"when": {"quality": ["red"]}, "do": "pause"},
            {"when": {"status": ["flagged"]}, "do": "pause"},
            {"when": {"status": ["restricted"]}, "do": "hold"},
        ],
        "resume": {"at": 0.5, "over": "3d"},
    },
}
