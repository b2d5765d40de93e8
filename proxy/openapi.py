"""The served OpenAPI schema: ``GET /schema/openapi.json``.

Litestar describes paths, parameters and responses from the handlers. Request bodies are decoded by our own
strict msgspec decoders (so errors name the field, see :func:`memory.errors.decode`), which Litestar cannot
see; each such handler names its body type in ``opt={"body": Type}`` and the renderer adds it, with
msgspec's own JSON schema of that type, so the document matches exactly what the decoder accepts.
"""

from __future__ import annotations

import copy
from importlib.metadata import version
from typing import Any

import msgspec
from litestar import Request, Router
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin

_REF = "#/components/schemas/{name}"
_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}


def with_bodies(request: Request[Any, Any, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with the request body of every handler that names one, and OpenAI's error shape."""
    schema = copy.deepcopy(schema)
    bodies: dict[tuple[str, str], type] = {}
    for route in request.app.routes:
        for handler in getattr(route, "route_handlers", ()):
            body = handler.opt.get("body")
            if body is None:
                continue
            for method in handler.http_methods:
                bodies[(route.path_format, method.lower())] = body
    types = sorted(set(bodies.values()), key=str)
    names, components = msgspec.json.schema_components(types, ref_template=_REF)
    refs = dict(zip(types, names, strict=True))
    schema.setdefault("components", {}).setdefault("schemas", {}).update(components)
    schema["components"]["schemas"]["Error"] = _ERROR
    for (path, method), body in bodies.items():
        operation = schema.get("paths", {}).get(path, {}).get(method)
        if operation is None:
            continue
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": refs[body]}}}
        operation.setdefault("responses", {})["400"] = {
            "description": "Bad request: the error names the field",
            "content": {"application/json": {"schema": {"$ref": _REF.format(name="Error")}}},
        }
    return schema


class _SchemaWithBodies(JsonRenderPlugin):
    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return self.render_json(request, with_bodies(request, openapi_schema))


def openapi_config() -> OpenAPIConfig:
    """Only the JSON document, at ``/schema/openapi.json``, readable without a key."""
    return OpenAPIConfig(
        title="Mémoire",
        version=version("memoire"),
        description="Long-term memory for LLM apps: an OpenAI-compatible proxy and a REST API.",
        render_plugins=[_SchemaWithBodies()],
        openapi_router=Router("/schema", route_handlers=[], opt={"public": True}, include_in_schema=False),
    )
