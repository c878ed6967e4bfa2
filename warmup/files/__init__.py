"""Reading hand-written inputs: YAML plans (every problem at FILE:LINE:COL), message pools, contact lists.

The edge between files on disk and the pure core: what is read here is validated into `warmup.core`
types, so nothing past this package opens a plan's files.
"""
