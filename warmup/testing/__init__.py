"""Tools to run a whole fleet in subprocesses and check the design invariants against ground truth.

Used by the slow fleet tests and by the benchmarks (``benchmarks/``); not needed to run warmup.

* `services` - a private ``redis-server`` (restartable) and throwaway PostgreSQL databases;
* `harness` - `FleetHarness`: simulator, dramatiq worker and scheduler processes on one shared clock,
  with helpers to SIGKILL a worker or the leading scheduler and to restart Redis;
* `processes` - `Proc`, one such process; `fleet_setup` - a fleet's plan files and numbers (also used by
  the tests' in-process fleet); `sim_admin` - the simulator's admin client;
* `invariants` - `check_invariants`: the simulator's send log and the store, compared.
"""
