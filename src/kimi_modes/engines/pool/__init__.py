"""Several upstreams behind the one engine interface: :class:`EnginePool`.

What a caller may rely on (details and the snapshot fields: docs/pool.md):

- **Routing.** Each request goes to the available member with the least load, where load =
  our requests in flight to it + the engine's own queue (``vllm:num_requests_waiting``, or
  SGLang's ``sglang:num_queue_reqs``, summed over label sets) as last read from its
  ``metrics_url``. Ties go to the one with fewer of our requests in flight, then round-robin.
  ``/metrics`` is read in the background every ``metrics_interval`` seconds while the pool is
  in use, never on a request's path; a figure that cannot be read goes stale (unused after
  ``max(5 × metrics_interval, 5 s)``) and never takes a member out by itself.
- **Router members** (``PoolMember(router=True)``: llm-d, vLLM Router, SGLang Model Gateway,
  Dynamo in front of many replicas) are not balanced on top of: while one is available it
  gets the request (the first in member order), with no ``/metrics`` and no load
  comparison; plain members then serve only when no router member can. Caps, retries,
  ``Retry-After`` and the circuit breaker apply to them as to any member.
- **Caps.** A member never has more than ``max_concurrency`` of our requests at once. When no
  member can take a request it waits in one first-come-first-served queue, for as long as it
  takes (``queue_timeout=None``) or up to ``queue_timeout`` seconds (then
  :class:`UpstreamOverloaded`). Being over the caps never fails a request by itself.
- **Retries.** A failure before the first event (unreachable, timeout, 429/503, 5xx, a stream
  cut before anything came) counts against the member, which then gets no request for a
  back-off: ``backoff × 2^(consecutive failures − 1)``, or the upstream's ``Retry-After``,
  at most ``max_backoff``. The request is tried again at once on another available member,
  else on the same one once its back-off is over; at most ``max_attempts`` tries in all, then
  the last error is raised. :class:`UpstreamRejected` (the request itself is bad) is raised
  at once and does not count against the member.
- **Mid-stream failures.** Once events have been yielded nothing is retried: the failure
  counts against the member and the :class:`EngineError` is raised unchanged.
- **Circuit breaker.** ``failure_threshold`` failures in a row take a member out for
  ``cooldown`` seconds (logged as one warning). Then one trial request is let through: its
  success brings the member back (one warning), its failure takes it out again for twice as
  long, at most ``max_cooldown``. A stream that ends with its :class:`Finish` resets the
  member's failure count. While every member is out, requests wait for the soonest to come
  back, unless that is more than ``max_backoff`` seconds away: then they fail at once (with
  their own last error, else :class:`UpstreamUnavailable` naming the pool).
- **Cancellation.** Closing the stream or cancelling its consumer closes the member's stream
  and frees the slot (or leaves the queue) at once.
- :meth:`EnginePool.aclose` stops the metrics reading only: member engines are shared and
  closed by their owner.

Example::

    from kimi_modes.endpoint import metrics_url
    from kimi_modes.engines.openai_chat import OpenAIChatEngine
    from kimi_modes.engines.pool import EnginePool, PoolMember

    urls = ["http://gpu1:8000/v1", "http://gpu2:8000/v1"]
    pool = EnginePool("kimi", [
        PoolMember(OpenAIChatEngine(f"gpu{i}", url), max_concurrency=64,
                   metrics_url=metrics_url(url))
        for i, url in enumerate(urls, 1)
    ])
    async for event in pool.stream(ChatRequest(messages=[{"role": "user", "content": "Hi"}])):
        print(event)
    print(pool.snapshot())
    await pool.aclose()
"""

from kimi_modes.engines.pool.member import PoolMember
from kimi_modes.engines.pool.metrics import EngineLoad, parse_load
from kimi_modes.engines.pool.pool import EnginePool

__all__ = ["EngineLoad", "EnginePool", "PoolMember", "parse_load"]
