"""``kimi-modes verify tools``: the tool-call verifier (K2-Vendor-Verifier's method)."""
