"""kombu's Redis transport, made to refuse a malformed message instead of dying on it.

kombu pops a message off the queue (``BRPOP``), parses its JSON wrapper and builds a
``Message`` from it *before* the message is filed as un-acked. A wrapper kombu cannot
parse (not JSON, no ``properties.delivery_tag``, a body that is not base64, no
``delivery_info``) therefore raised out of the consumer's event loop: Celery dropped its
broker connection, reconnected, and the message, already popped and never filed, was
gone without a trace. A third-party client (docs/TASK_CONTRACT.md) can send exactly that.

Here the wrapper is checked between the pop and the delivery: a bad one is logged at
ERROR with why and an excerpt, and dropped (it can never be delivered, so requeueing it
would only loop); the connection and every other message are untouched. What lies
*inside* a good wrapper (the task body's JSON, its arguments) is Celery's and the task's
to refuse: Celery logs an undecodable body and acks it, the task rejects bad arguments.

``worker.app`` selects these classes with ``broker_transport`` (``transport_for``),
for ``redis://``, ``rediss://`` and ``sentinel://`` URLs alike.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from typing import Any

from kombu.transport import redis as kombu_redis

log = logging.getLogger("bulktag.broker")

EXCERPT = 300  # characters of a refused message kept in the log line


def wrapper_problem(message: Any) -> str | None:
    """Why kombu could not deliver this parsed wrapper, or None when it can.

    Checks exactly what kombu reads before the message is safely filed as un-acked:
    ``properties`` (a dict) with ``delivery_tag`` and ``delivery_info.exchange`` /
    ``routing_key``, ``headers`` a dict if present, and a base64 body that decodes.
    """
    if not isinstance(message, dict):
        return f"the wrapper is a JSON {type(message).__name__}, not an object"
    props = message.get("properties")
    if not isinstance(props, dict):
        return "no 'properties' object"
    if not isinstance(props.get("delivery_tag"), str) or not props["delivery_tag"]:
        return "no properties.delivery_tag (a unique string per message)"
    info = props.get("delivery_info")
    if not isinstance(info, dict) or "exchange" not in info or "routing_key" not in info:
        return "no properties.delivery_info with 'exchange' and 'routing_key'"
    if not isinstance(message.get("headers", {}), dict | None):
        return "'headers' is not an object"
    body = message.get("body")
    if body and props.get("body_encoding") == "base64":
        if not isinstance(body, str):
            return "a base64 'body' that is not a string"
        try:
            base64.b64decode(body.encode())  # as kombu decodes it (not strict)
        except (binascii.Error, ValueError) as exc:
            return f"'body' is not valid base64 ({exc})"
    return None


def transport_for(broker_url: str) -> str | None:
    """The ``broker_transport`` setting for ``broker_url`` (None: kombu's default)."""
    scheme = broker_url.split("://", 1)[0].lower()
    if scheme in ("redis", "rediss"):
        return "worker.broker:Transport"
    if scheme == "sentinel":
        return "worker.broker:SentinelTransport"
    return None


def _excerpt(raw: Any) -> str:
    text = raw if isinstance(raw, str) else json.dumps(raw, default=str)
    return text[:EXCERPT] + ("..." if len(text) > EXCERPT else "")


class _RefusingNonJson:
    """Mixin: refuse a popped message that is not JSON (parsed in ``_brpop_read``)."""

    def _brpop_read(self, **options: Any) -> bool:
        try:
            return bool(super()._brpop_read(**options))  # type: ignore[misc]
        except json.JSONDecodeError as exc:
            # Only the wrapper's parse can raise this here: Celery catches errors in
            # decoding a task body itself (on_decode_error) and never re-raises them.
            log.error(
                "rejected a malformed broker message: not JSON (%s); dropped: %s",
                exc,
                _excerpt(exc.doc),
            )
            return True  # one message consumed; the event loop carries on


class _RefusingDeliveries:
    """Mixin: check each wrapper before kombu builds a Message from it."""

    def _deliver(self, message: Any, queue: str) -> None:
        problem = wrapper_problem(message)
        if problem is not None:
            log.error(
                "rejected a malformed broker message on queue %s: %s; dropped: %s",
                queue,
                problem,
                _excerpt(message),
            )
            return
        super()._deliver(message, queue)  # type: ignore[misc]


class Channel(_RefusingNonJson, kombu_redis.Channel):
    pass


class SentinelChannel(_RefusingNonJson, kombu_redis.SentinelChannel):
    pass


class Transport(_RefusingDeliveries, kombu_redis.Transport):
    """``redis://`` and ``rediss://`` brokers."""

    Channel = Channel


class SentinelTransport(_RefusingDeliveries, kombu_redis.SentinelTransport):
    """``sentinel://`` brokers."""

    Channel = SentinelChannel
