"""Settings read from the environment (pydantic-settings), one object for every process of a run."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything configurable about a run. Secrets are never settings: fleet files reference them."""

    model_config = SettingsConfigDict(env_prefix="WARMUP_", extra="ignore")

    database_url: str = Field(
        default="sqlite:///warmup.db",
        description="SQLAlchemy URL; SQLite file in the working directory by default, PostgreSQL in a fleet",
    )
    redis_url: str | None = Field(
        default=None, description="Redis for the broker and the scheduler lock; unset means embedded mode"
    )
    db_pool_size: int = Field(
        default=12,
        ge=1,
        le=200,
        description=(
            "PostgreSQL connections each process keeps open: at least a worker's --threads (default 8),"
            " else connections are opened and closed all the time under load"
        ),
    )
    db_max_overflow: int = Field(
        default=12, ge=0, le=200, description="extra PostgreSQL connections a process may open at a peak"
    )
    log_format: str = Field(default="console", pattern="^(console|json)$")
    log_level: str = "INFO"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
