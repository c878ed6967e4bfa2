"""The pure core: where a number's quota for a local day is DECIDED.

Domain types, the plan model and its value languages, the ramp (decides the quota), the risk policy,
the spread of a day's sends over the plan's windows (pacing), and the audience. No I/O, no clock, no
randomness of its own: time and `random.Random` come in as arguments, so every day replays exactly.
Nothing here imports the rest of the project (checked by the import contract in pyproject.toml).
"""
