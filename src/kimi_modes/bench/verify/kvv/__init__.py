"""Moonshot's Kimi-Vendor-Verifier (KVV) pre-flight suites, spelled our way: one module per
KVV test folder or file (``params``, ``schema``, ``k3`` with ``dynamic_tools`` and
``effort``, ``prompt_tokens`` with ``images``), sharing :mod:`.probe`. The runner is
:mod:`kimi_modes.bench.verify.suites`."""
