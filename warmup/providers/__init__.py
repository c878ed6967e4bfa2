"""WhatsApp API clients behind one small interface (`Provider`), with every outcome mapped to an action."""

from warmup.providers.base import (
    Health,
    Inbound,
    OutcomeAction,
    Provider,
    ProviderError,
    SendResult,
)
from warmup.providers.cloud_api import CloudApiProvider
from warmup.providers.factory import make_provider
from warmup.providers.webhooks import WebhookError
from warmup.providers.whapi import WhapiProvider

__all__ = [
    "CloudApiProvider",
    "Health",
    "Inbound",
    "OutcomeAction",
    "Provider",
    "ProviderError",
    "SendResult",
    "WebhookError",
    "WhapiProvider",
    "make_provider",
]
