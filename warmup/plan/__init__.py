"""Ramp plans: the YAML language, its validation and its JSON Schema."""
