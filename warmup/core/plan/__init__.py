"""Ramp plans as typed data: the pydantic model, the small value languages, and the JSON Schema."""
