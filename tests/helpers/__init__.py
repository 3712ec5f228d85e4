"""What many test files share: starting real processes (:mod:`.processes`), tool schemas
(:mod:`.tools`) and SDK clients for a running gateway (:mod:`.clients`). Imported as
``helpers`` (tests/ is on the path through its conftest)."""
