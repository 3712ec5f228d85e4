"""OpenAI's Responses API: ``POST /v1/responses`` and the stored-response routes.

- :mod:`.request`: the body's fields and the engine request they make;
- :mod:`.items`: Responses items ↔ chat messages;
- :mod:`.stream`: the typed stream events and the output items they add up to;
- :mod:`.body`: the ``response`` object;
- :mod:`.stored`: responses kept in (and read back from) the run store;
- :mod:`.wire`: the :class:`~kimi_modes.server.wire.WireFormat` the gateway serves;
- :mod:`.routes`: ``GET``/``DELETE /v1/responses/{id}``, ``.../cancel``, ``.../input_items``.
"""

from kimi_modes.server.responses_api.routes import ResponsesRoutes
from kimi_modes.server.responses_api.stored import StoredResponses
from kimi_modes.server.responses_api.wire import ResponsesWire

__all__ = ["ResponsesRoutes", "ResponsesWire", "StoredResponses"]
