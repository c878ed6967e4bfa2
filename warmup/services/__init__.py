"""The application: where a day's quota is SPENT, and what operators do to a running fleet.

Each service loads rows from the store, asks the pure core, calls a provider, and records the outcome
through the store: planning (a number's local day), sending (claim -> provider -> record), replies and
reconcile, the scheduler's duties (with the dispatcher passed in: the library never imports
`workers/`), admin commands, fleet apply, doctor and metrics.
"""
