"""The shared cache: Flask-Caching on Redis when ``CACHE_REDIS_URL`` or ``REDIS_URL`` is set (every
worker on every machine reads and drops the same entries), else ``SimpleCache`` in this process
(one worker, the tests). ``config.cache_settings`` picks the backend.

:class:`Shared` keeps one value per id for a few seconds. :meth:`Shared.invalidate` makes every
worker miss at once: it replaces the id's *generation*, and a value is served only under the
generation it was read under, so a list a worker fetched from Stripe just before a change can't be
stored afterwards as the current one. A cache that fails (Redis down or slow) is a miss and a
dropped write: the caller asks the source of truth, nothing raises.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from .extensions import cache

log = logging.getLogger(__name__)

#: how long an id's generation is remembered: far longer than any value kept under it
GENERATION_SECONDS = 24 * 3600
#: the generation of an id never invalidated (or whose generation expired)
FIRST_GENERATION = "0"
CACHE_ERRORS = (RedisError, OSError)


@dataclass(frozen=True)
class Read:
    """What :meth:`Shared.read` found: ``value`` (None on a miss) and the generation to store under."""

    value: Any
    generation: str | None  # None: the cache did not answer, so nothing is stored


class Shared:
    """Values by id in the shared cache for ``seconds``, dropped on every worker by :meth:`invalidate`.

    Keys: ``<namespace>:<id>`` holds ``(generation, value)``, ``<namespace>:<id>:generation`` the
    id's current generation (both under the app's ``CACHE_KEY_PREFIX``)."""

    def __init__(self, namespace: str, seconds: int) -> None:
        self.namespace = namespace
        self.seconds = seconds

    def _keys(self, ident: str) -> tuple[str, str]:
        key = f"{self.namespace}:{ident}"
        return key, key + ":generation"

    def read(self, ident: str) -> Read:
        """The value kept for ``ident`` (one round trip), or a miss that says where to store one."""
        value_key, generation_key = self._keys(ident)
        try:
            stored, generation = cache.get_many(value_key, generation_key)
        except CACHE_ERRORS as err:
            log.warning("shared cache unavailable, reading %s from the source: %s", self.namespace, err)
            return Read(None, None)
        generation = generation or FIRST_GENERATION
        if isinstance(stored, tuple) and len(stored) == 2 and stored[0] == generation:
            return Read(stored[1], generation)
        return Read(None, generation)

    def store(self, ident: str, value: Any, read: Read) -> None:
        """Keep ``value``, fetched after ``read``: unless ``ident`` was invalidated since."""
        if read.generation is None:
            return
        value_key, _ = self._keys(ident)
        try:
            cache.set(value_key, (read.generation, value), timeout=self.seconds)
        except CACHE_ERRORS as err:
            log.warning("shared cache unavailable, %s not kept: %s", self.namespace, err)

    def invalidate(self, ident: str) -> None:
        """Every worker misses ``ident`` from now on (and a fetch under way stores nothing current)."""
        value_key, generation_key = self._keys(ident)
        try:
            cache.set(generation_key, secrets.token_hex(8), timeout=GENERATION_SECONDS)
            cache.delete(value_key)
        except CACHE_ERRORS as err:  # other workers may serve the old value until it expires
            log.error("shared cache unavailable, %s for %s not invalidated: %s", self.namespace, ident, err)


def due(key: str, seconds: int, *, force: bool = False) -> bool:
    """True at most once per ``seconds`` for ``key`` across all workers (the first caller wins);
    ``force`` restarts the period and answers True. True as well when the cache fails."""
    try:
        if force:
            cache.set(key, 1, timeout=seconds)
            return True
        return bool(cache.add(key, 1, timeout=seconds))
    except CACHE_ERRORS as err:
        log.warning("shared cache unavailable, %s is due: %s", key, err)
        return True
