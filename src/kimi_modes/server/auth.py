"""Who is calling: the gateway's API keys, and the identity each request is served under.

Every accepted key is a *tenant*: its id is ``key_`` + 24 hex digits of a BLAKE2b hash of the
key (the key itself is never stored or shown). The runs a caller starts are recorded with its
id as their owner, and the runs API shows a caller only the runs it owns. Operator keys
(``[server] operator_api_keys``) are accepted like the others and see every run. With no keys
configured at all the gateway is single-user: nobody is asked for a key, runs have no owner,
and every caller sees every run.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from starlette.requests import Request

_PERSON: Final = b"kimi-modes-key"  # BLAKE2b personalisation: these ids hash nothing else


@dataclass(frozen=True, slots=True)
class Caller:
    """Whom a request is served for. ``owner``: the id recorded on the runs it starts
    (``None`` in single-user mode). ``sees_all``: an operator, or single-user mode."""

    owner: str | None
    sees_all: bool = False

    @property
    def scope(self) -> str | None:
        """The owner the caller's view of the runs is limited to; ``None``: every run."""
        return None if self.sees_all else self.owner


#: Every caller of a gateway without keys.
SINGLE_USER: Final = Caller(owner=None, sees_all=True)


def tenant_id(key: str) -> str:
    """The id of the caller holding ``key``: stable across restarts, not reversible."""
    digest = hashlib.blake2b(key.encode(), digest_size=12, person=_PERSON).hexdigest()
    return "key_" + digest


class APIKeys:
    """The keys a gateway accepts: ``keys`` (each sees its own runs) and ``operator_keys``
    (each sees every run). Neither given: single-user mode, every request is let through as
    :data:`SINGLE_USER`."""

    def __init__(self, keys: Iterable[str], operator_keys: Iterable[str] = ()) -> None:
        callers: dict[str, Caller] = {k: Caller(tenant_id(k)) for k in keys}
        callers.update({k: Caller(tenant_id(k), sees_all=True) for k in operator_keys})
        self._callers = [(key.encode(), caller) for key, caller in callers.items()]

    @property
    def required(self) -> bool:
        """Whether requests must carry a key."""
        return bool(self._callers)

    def identify(self, request: Request) -> Caller | str:
        """The caller of ``request``, from ``Authorization: Bearer KEY`` (or Anthropic's
        ``x-api-key: KEY``); a refused request gives the message to answer it with (401)."""
        if not self._callers:
            return SINGLE_USER
        given = request.headers.get("x-api-key", "")
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        if not given:
            return "missing API key: send 'Authorization: Bearer KEY'"
        found: Caller | None = None
        for key, caller in self._callers:  # every key compared, in constant time each
            if hmac.compare_digest(given.encode(), key):
                found = caller
        return found if found is not None else "invalid API key"
