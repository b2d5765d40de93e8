"""What the process currently knows to be down, for readiness and the ``x-memoire-degraded`` header."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


class Health:
    """Components (``database``, ``redis``) marked down by whoever last failed to reach them."""

    def __init__(self) -> None:
        self._down: set[str] = set()
        self.header_value: bytes = b""
        """The ``x-memoire-degraded`` header value, precomputed: empty when all is well."""

    def mark(self, component: str, ok: bool) -> None:
        if ok == (component not in self._down):
            return
        if ok:
            self._down.discard(component)
            log.info("%s is back", component)
        else:
            self._down.add(component)
            log.warning("%s is unavailable; exchanges are kept in the spool until it returns", component)
        self.header_value = ",".join(sorted(self._down)).encode()
