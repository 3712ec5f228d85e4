"""The simulator: a real HTTP server that behaves like vLLM serving Kimi (any family of
:mod:`kimi_modes.protocol.families`; K2.5 by default).

It speaks vLLM's OpenAI-compatible API as vLLM ≥ 0.15 does when started with the family's
parsers, ``--tool-call-parser kimi_k2 --reasoning-parser kimi_k2 --enable-auto-tool-choice``
(K3: ``kimi_k3``; its XTML on ``/v1/completions``), or, with ``--raw-markers``, without
them, answers deterministically (scripted rules, else a rule-based default), streams at set
latencies against absolute deadlines, queues beyond ``--max-num-seqs``, and injects faults on
demand. Tests, benchmarks and demos run it as its
own process::

    python -m kimi_modes.simulator --port 0 --ttft 0.05 --tpot 0.01
    # Simulated Kimi engine listening on http://127.0.0.1:PORT

and talk to it with any OpenAI client::

    from openai import OpenAI
    client = OpenAI(base_url="http://127.0.0.1:PORT/v1", api_key="none")
    reply = client.chat.completions.create(
        model="moonshotai/Kimi-K2.5", messages=[{"role": "user", "content": "Hi"}])
    reply.choices[0].message.content            # 'You said: Hi'

In-process, :func:`kimi_modes.simulator.app.create_app` builds the ASGI app from a
:class:`kimi_modes.simulator.config.SimConfig`. ``/sim/control`` changes latencies
and faults at run time; ``/sim/stats`` tells what was received. See docs/simulated.md.

It is a program of its own, not an engine: nothing in :mod:`kimi_modes.engines` uses it, and it
imports only :mod:`kimi_modes.protocol` of ours.
"""
