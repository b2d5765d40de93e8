"""The served OpenAPI schema describes the REST surface, and no input to it gets a 500.

schemathesis generates valid and invalid requests for every operation from ``/schema/openapi.json`` and sends
them to a real server (real PostgreSQL and Redis, auth on). Each response must not be a server error, and
every error must be in OpenAI's shape.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.support.keys import ADMIN, new_key
from tests.support.servers import ProxyFactory, ServerThread

pytestmark = pytest.mark.usefixtures("db")


@pytest.fixture
def fuzzed(start_proxy: ProxyFactory, llm_url: str) -> tuple[ServerThread, dict[str, str]]:
    # Embeddings from the fake provider over HTTP: this is about input handling, and thousand-fact bodies
    # would take the local model minutes.
    server = start_proxy(
        auth={"enabled": True, "admin_key": ADMIN, "rate_limit": 0},
        embeddings={"provider": "openai", "base_url": llm_url, "model": "fake-embed"},
    )
    with httpx.Client(base_url=server.url) as http:
        key = new_key(http, "fuzz")
        # Seed a user with facts, so that reads find something as well as nothing.
        http.post(
            "/v1/facts",
            json={
                "user_id": "ana",
                "facts": [{"text": "Lives in Denver", "slot": "home_city", "value": "Denver"}],
            },
            headers={"x-memoire-key": key},
        )
    return server, {"x-memoire-key": key, "authorization": f"Bearer {ADMIN}"}


def test_the_schema_describes_the_rest_surface(fuzzed: tuple[ServerThread, dict[str, str]]) -> None:
    server, _ = fuzzed
    document = httpx.get(f"{server.url}/schema/openapi.json").json()
    operations = {(path, method) for path, item in document["paths"].items() for method in item}
    assert {
        ("/v1/ingest", "post"),
        ("/v1/recall", "post"),
        ("/v1/facts", "post"),
        ("/v1/facts/{fact_id}", "get"),
        ("/v1/facts/{fact_id}", "patch"),
        ("/v1/facts/{fact_id}", "delete"),
        ("/v1/facts/{fact_id}/history", "get"),
        ("/v1/users/{user_id}/facts", "get"),
        ("/v1/users/{user_id}/profile", "get"),
        ("/v1/users/{user_id}", "delete"),
        ("/healthz", "get"),
        ("/readyz", "get"),
    } <= operations
    body = document["paths"]["/v1/facts"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/FactsRequest"}
    assert "user_id" in document["components"]["schemas"]["FactsRequest"]["required"]


#: Requests generated per operation and mode (valid, invalid): bounded, and the same on every run.
EXAMPLES = 50


def test_no_input_gets_a_server_error(fuzzed: tuple[ServerThread, dict[str, str]]) -> None:
    server, headers = fuzzed
    schema = schemathesis.openapi.from_url(f"{server.url}/schema/openapi.json")
    failures: list[str] = []
    statuses: dict[int, int] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 14
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                derandomize=True,
                database=None,
            )
            def check(case: Any) -> None:
                response = case.call(base_url=server.url, headers=headers)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                case.validate_response(response, checks=[not_a_server_error])
                content_type = response.headers.get("content-type") or [""]
                if response.status_code >= 400 and content_type[0].startswith("application/json"):
                    assert {"message", "type", "code"} <= set(response.json()["error"]), response.text

            try:
                check()
            except Unsatisfiable:  # nothing invalid to send (no parameters, no body)
                continue
            except Exception as exc:  # collect every operation's failure, not just the first
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert failures == []
    # Both accepted and refused requests were made, and none of them was a server error.
    assert sum(n for status, n in statuses.items() if status < 300) > 100
    assert sum(n for status, n in statuses.items() if 400 <= status < 500) > 100


def nested(levels: int) -> Any:
    value: Any = []
    for _ in range(levels - 1):
        value = [value]
    return value


def test_hostile_json_to_every_operation_with_a_body_gets_a_400_naming_it(
    fuzzed: tuple[ServerThread, dict[str, str]],
) -> None:
    """Valid bodies from the schema, each given one hostile field: nesting past ``server.max_json_depth``
    (128) or an integer no 64 bits hold. Every one gets 400 json_limit_exceeded, naming the field."""
    server, headers = fuzzed
    schema = schemathesis.openapi.from_url(f"{server.url}/schema/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    with_body = [op for op in operations if "application/json" in op.get_request_payload_content_types()]
    assert len(with_body) >= 5
    refused: list[str] = []
    for operation in with_body:

        @given(case=operation.as_strategy(generation_mode=GenerationMode.POSITIVE))
        @settings(
            max_examples=3,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def check(case: Any) -> None:
            if not isinstance(case.body, dict):
                return
            if case.path_parameters and "task" in case.path_parameters:
                case.path_parameters["task"] = "optimize_memory"  # a task that exists: the body is read
            for hostile in (nested(200), 10**30):
                case.body = {**case.body, "hostile": hostile}
                response = case.call(base_url=server.url, headers=headers)
                assert response.status_code == 400, response.text
                error = response.json()["error"]
                assert error["code"] == "json_limit_exceeded"
                assert error["param"].startswith("hostile")
            refused.append(case.operation.label)

        check()
    assert len(set(refused)) == len(with_body)
