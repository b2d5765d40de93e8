"""The admin key the tests run with, and making API keys through the admin API."""

from __future__ import annotations

from typing import Any

import httpx

ADMIN = "admin-secret-for-tests"


SERVER_PROVIDER_KEY = "sk-server-side"


def new_key(http: httpx.Client, name: str, **fields: Any) -> str:
    response = http.post(
        "/v1/admin/keys", json={"name": name, **fields}, headers={"authorization": f"Bearer {ADMIN}"}
    )
    assert response.status_code == 201, response.text
    key: str = response.json()["key"]
    return key
