"""Parsing one ``BULKTAG_*`` value: integers, numbers, choices, booleans, host lists.

Each refuses a bad value with a ``ConfigError`` that names the variable, so a typo in
the environment is one clear line, not a traceback. Used by ``tasks.settings``.
"""

from __future__ import annotations

from pathlib import Path

from tasks.errors import ConfigError


def int_value(env: dict[str, str], name: str, default: int, minimum: int) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def float_value(env: dict[str, str], name: str, default: float, minimum: float = 0.001) -> float:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not value >= minimum:  # also refuses nan
        raise ConfigError(f"{name} must be >= {minimum}, got {raw}")
    return value


def hosts(raw: str | None) -> tuple[str, ...]:
    """A comma list of Host names (``*`` = any), normalised; empty when unset.

    A port is dropped (``localhost:8080`` allows ``localhost`` on any port): the Host
    check guards against foreign *names*, and the port is the one the API listens on.
    """
    names = []
    for item in (raw or "").split(","):
        name = item.strip().lower()
        if name.startswith("[") and "]" in name:
            name = name[: name.index("]") + 1]
        elif name.count(":") == 1:
            name = name.split(":", 1)[0]
        elif ":" in name:  # a bare IPv6 address: Host headers carry it in brackets
            name = f"[{name}]"
        if name:
            names.append(name)
    return tuple(names)


def path_or_none(raw: str | None) -> Path | None:
    return Path(raw).expanduser() if raw else None


def choice_value(env: dict[str, str], name: str, choices: tuple[str, ...]) -> str:
    """One of ``choices`` (the first is the default), case-insensitive."""
    raw = (env.get(name) or choices[0]).lower()
    if raw not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def bool_value(env: dict[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")
