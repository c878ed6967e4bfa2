"""The dramatiq side of warmup: the broker setup and the actors the scheduler enqueues.

Fleet workers run as ``dramatiq workers.actors`` (the broker comes from ``WARMUP_REDIS_URL``);
embedded mode starts in-process worker threads on an in-process broker (``workers.embedded``).
"""
