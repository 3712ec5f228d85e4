"""API keys and the caller each request is served for (server/auth.py)."""

from __future__ import annotations

from starlette.requests import Request

from kimi_modes.server.auth import SINGLE_USER, APIKeys, Caller, tenant_id


def _request(**headers: str) -> Request:
    raw = [(k.replace("_", "-").lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": raw})


def test_tenant_ids_are_stable_distinct_and_do_not_show_the_key() -> None:
    assert tenant_id("sk-a") == tenant_id("sk-a")
    assert tenant_id("sk-a") != tenant_id("sk-b")
    assert tenant_id("sk-a").startswith("key_") and len(tenant_id("sk-a")) == 4 + 24
    assert "sk-a" not in tenant_id("sk-a")


def test_keys_identify_their_caller() -> None:
    keys = APIKeys(["sk-a", "sk-b"], ["sk-op"])
    assert keys.required
    assert keys.identify(_request(authorization="Bearer sk-a")) == Caller(tenant_id("sk-a"))
    assert keys.identify(_request(x_api_key="sk-b")) == Caller(tenant_id("sk-b"))
    operator = keys.identify(_request(authorization="Bearer sk-op"))
    assert operator == Caller(tenant_id("sk-op"), sees_all=True)
    assert isinstance(operator, Caller) and operator.scope is None
    caller = keys.identify(_request(authorization="Bearer sk-a"))
    assert isinstance(caller, Caller) and caller.scope == tenant_id("sk-a")
    assert keys.identify(_request(authorization="Bearer sk-nope")) == "invalid API key"
    assert "missing API key" in str(keys.identify(_request()))


def test_operator_keys_alone_turn_auth_on() -> None:
    keys = APIKeys([], ["sk-op"])
    assert keys.required
    assert keys.identify(_request()) != SINGLE_USER


def test_without_keys_everyone_is_the_single_user() -> None:
    keys = APIKeys([])
    assert not keys.required
    assert keys.identify(_request()) is SINGLE_USER
    assert keys.identify(_request(authorization="Bearer anything")) is SINGLE_USER
    assert SINGLE_USER.owner is None and SINGLE_USER.scope is None
