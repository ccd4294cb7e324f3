"""The category names of each model id, so commands can resolve labels without torch.

Every worker process publishes its checkpoint's categories when it loads the model;
``bulktag search``/``labels`` and the API read them back by model id. A custom
fine-tuned checkpoint (``bulktag weights import-custom``) has its own list and length.
"""

from __future__ import annotations

import json
from typing import Any

import redis

from tasks import keys


def base_model_id(model_id: str) -> str:
    """``resnet18-0123456789ab+fast+int8-x`` -> ``resnet18-0123456789ab``: variants of
    one checkpoint (decode, precision) share its labels."""
    return model_id.split("+", 1)[0]


class ModelLabels:
    """Category names per checkpoint, in Redis."""

    def __init__(self, client: redis.Redis) -> None:
        self.r: Any = client  # redis-py's stubs vary by version; values are str

    def save(self, model_id: str, categories: list[str]) -> None:
        """Record ``categories`` for ``model_id``'s checkpoint (idempotent)."""
        self.r.set(keys.model_labels(base_model_id(model_id)), json.dumps(categories))

    def get(self, model_id: str) -> list[str] | None:
        """The categories of ``model_id``'s checkpoint, or None when no worker published them."""
        raw = self.r.get(keys.model_labels(base_model_id(model_id)))
        return [str(c) for c in json.loads(raw)] if raw else None
