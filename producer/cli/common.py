"""What every ``bulktag`` command shares: settings from flags, argument types, exit codes."""

from __future__ import annotations

import argparse

from tasks.settings import DECODE_MODES, DEVICES, PRECISIONS, Settings

EXIT_ERROR = 1
# Choices offered by the CLI come from the settings module, so the two never drift.
__all__ = ["DECODE_MODES", "DEVICES", "EXIT_ERROR", "PRECISIONS", "auto_int", "positive_int"]


def settings_for(args: argparse.Namespace) -> Settings:
    """Settings from the environment, with the global ``--redis-url`` flag over it."""
    return Settings.from_env().with_overrides(redis_url=getattr(args, "redis_url", None))


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (so `--chunk-size 0` is an error, not a default)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def auto_int(value: str) -> int:
    """``auto`` (0: let the worker size it from the core count) or a positive integer."""
    return 0 if value.lower() == "auto" else positive_int(value)
