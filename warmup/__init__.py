"""warmup: an automatic warm-up orchestrator for WhatsApp numbers."""

__version__ = "0.1.0"
