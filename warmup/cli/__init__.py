"""The `warmup` command line."""
