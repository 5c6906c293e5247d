"""Validate requests (and the fake's own responses) against Brevo's OpenAPI file.

The spec is ``spec/brevo-openapi.yaml`` beside this file (860 KB, Brevo's own definition, byte for
byte; ``spec/README.md`` says where it comes from). Parsing it takes about 0.3 s,
so the parsed and patched dict is cached once per process; each app builds its own cheap
``openapi_core.OpenAPI`` object over that dict (no shared mutable validator between threads).

Patches applied to the spec (see reference/brevo-api.md §7):

- every mapping key becomes a ``str`` (YAML reads response codes as ints);
- ``servers`` is replaced by :data:`SPEC_SERVER`, a fixed synthetic host: requests are presented
  to openapi-core with that host, so the cached spec works for any port the fake listens on;
- the list add/remove bodies' ``oneOf`` becomes ``anyOf`` (their alternatives have no
  ``required`` field, so a valid body matches all of them and ``oneOf`` fails); likewise the
  ``success``/``failure`` arrays of their 201 answer (an empty array matches both);
- ``content: {}`` (the spec's way of saying "no body", e.g. 204) is dropped, or openapi-core
  reports the empty body as missing data;
- numeric keywords that YAML left as strings (``maximum: '1E+2'``) become numbers, and the
  spec itself is not re-validated at load (it does not pass, and it costs time);
- ``GET /events`` and ``POST /events/batch``, which the saved file predates, are added from
  ``spec/get-events.yaml`` and ``spec/post-events-batch.yaml`` (transcribed from Brevo's
  current documentation; each file names its sources and what is not documented).

On top of the spec, :func:`strict_body_errors` rejects what Brevo would silently ignore: top-level
body fields the operation's schema does not name. Checks that need account state (date
attributes) live in ``brevo_state``.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters

SPEC_DIR = Path(__file__).parent / "spec"
DEFAULT_SPEC_PATH = SPEC_DIR / "brevo-openapi.yaml"
ADDED_OPERATIONS = {
    ("/events", "get"): SPEC_DIR / "get-events.yaml",
    ("/events/batch", "post"): SPEC_DIR / "post-events-batch.yaml",
}
SPEC_HOST = "http://fake-brevo.invalid"
SPEC_SERVER = f"{SPEC_HOST}/v3"
_ONE_OF_TO_ANY_OF = (
    "/contacts/lists/{listId}/contacts/add",
    "/contacts/lists/{listId}/contacts/remove",
)
_NUMERIC_KEYWORDS = {"maximum", "minimum", "maxLength", "minLength", "maxItems", "minItems"}


def _normalise(node: Any, key: str | None = None) -> Any:
    if isinstance(node, dict):
        return {str(k): _normalise(v, str(k)) for k, v in node.items()}
    if isinstance(node, list):
        return [_normalise(v) for v in node]
    if key in _NUMERIC_KEYWORDS and isinstance(node, str):
        number = float(node)
        return int(number) if number.is_integer() else number
    return node


def load_spec(path: Path = DEFAULT_SPEC_PATH) -> dict[str, Any]:
    """Parse and patch the spec once per process. Treat the result as read-only."""
    return _load_spec(path.resolve())


@functools.lru_cache(maxsize=4)
def _load_spec(path: Path) -> dict[str, Any]:
    with path.open("rb") as handle:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        raw = yaml.load(handle, Loader=loader)  # noqa: S506 - a SafeLoader
    spec: dict[str, Any] = _normalise(raw)
    spec["servers"] = [{"url": SPEC_SERVER}]
    for item in spec["paths"].values():
        for operation in item.values():
            for response in (operation.get("responses") or {}).values():
                if isinstance(response, dict) and response.get("content") == {}:
                    del response["content"]  # "no body"; openapi-core wants data otherwise
    for template in _ONE_OF_TO_ANY_OF:
        schema = spec["paths"][template]["post"]["requestBody"]["content"]["application/json"][
            "schema"
        ]
        schema["anyOf"] = schema.pop("oneOf")
    # the same quirk in their 201 body: an empty array matches both alternatives
    contacts = spec["components"]["schemas"]["postContactInfo"]["properties"]["contacts"]
    for name in ("success", "failure"):
        contacts["properties"][name]["anyOf"] = contacts["properties"][name].pop("oneOf")
    for (template, method), source in ADDED_OPERATIONS.items():
        with source.open("rb") as handle:
            added = _normalise(yaml.load(handle, Loader=loader))  # noqa: S506 - a SafeLoader
        spec["paths"].setdefault(template, {})[method] = added[method]
    return spec


@dataclass(frozen=True)
class _Template:
    template: str
    pattern: re.Pattern[str]
    literal_segments: int


@functools.lru_cache(maxsize=4)
def _templates(path: Path) -> tuple[_Template, ...]:  # path: resolved
    found = []
    for template in load_spec(path)["paths"]:
        regex = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
        literal = sum(1 for seg in template.split("/") if seg and not seg.startswith("{"))
        found.append(_Template(template, re.compile(f"^{regex}$"), literal))
    # literal paths (/contacts/lists) win over templated ones (/contacts/{identifier})
    found.sort(key=lambda t: -t.literal_segments)
    return tuple(found)


class _SpecRequest:
    """The openapi-core ``Request`` protocol over already-read request parts."""

    def __init__(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        body: bytes | None,
        content_type: str,
    ) -> None:
        self.method = method.lower()
        self.host_url = SPEC_HOST
        self.path = path
        self.body = body
        self.content_type = content_type
        self.parameters = RequestParameters(query=query, header=headers, cookie={})


class _SpecResponse:
    def __init__(self, status: int, body: bytes | None, content_type: str) -> None:
        self.status_code = status
        self.data = body
        self.content_type = content_type
        self.headers: dict[str, str] = {"Content-Type": content_type} if content_type else {}


def _describe(error: BaseException) -> Iterator[str]:
    cause = error.__cause__
    schema_errors = getattr(cause, "schema_errors", None) or getattr(error, "schema_errors", None)
    if schema_errors:
        for item in schema_errors:
            where = "/".join(str(p) for p in item.absolute_path)
            yield f"{where}: {item.message}" if where else str(item.message)
    elif cause is not None and str(cause) not in str(error):
        yield f"{error}: {cause}"
    else:
        yield str(error)


class BrevoSpec:
    """Request/response validation for one app. Cheap to build; the parse is cached."""

    def __init__(self, path: Path = DEFAULT_SPEC_PATH) -> None:
        self._path = path.resolve()
        self._spec = load_spec(path)
        self._api = OpenAPI.from_dict(self._spec, config=Config(spec_validator_cls=None))

    def operation(self, method: str, path: str) -> tuple[str, dict[str, Any]] | None:
        """The spec's (template, operation) for a request path under /v3, if any."""
        relative = path.removeprefix("/v3")
        for item in _templates(self._path):
            if item.pattern.match(relative):
                operation = self._spec["paths"][item.template].get(method.lower())
                return (item.template, operation) if operation is not None else None
        return None

    def request_errors(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        body: bytes | None,
        content_type: str,
    ) -> list[str]:
        request = _SpecRequest(method, path, query, headers, body, content_type)
        errors = [m for e in self._api.iter_request_errors(request) for m in _describe(e)]
        if not errors and body:
            errors.extend(self.strict_body_errors(method, path, body))
        return errors

    def response_errors(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        request_body: bytes | None,
        request_content_type: str,
        status: int,
        body: bytes | None,
        content_type: str,
    ) -> list[str]:
        request = _SpecRequest(method, path, query, headers, request_body, request_content_type)
        response = _SpecResponse(status, body, content_type)
        return [m for e in self._api.iter_response_errors(request, response) for m in _describe(e)]

    def strict_body_errors(self, method: str, path: str, body: bytes) -> list[str]:
        """Top-level body fields that the operation's schema does not name."""
        found = self.operation(method, path)
        if found is None:
            return []
        try:
            payload = json.loads(body)
        except ValueError:
            return []
        schema = (
            found[1].get("requestBody", {}).get("content", {}).get("application/json", {})
        ).get("schema")
        if not isinstance(payload, dict) or schema is None:
            return []
        known = self._property_names(schema)
        if known is None:
            return []
        return [
            f"{name}: field is not part of {found[1].get('operationId', found[0])}'s body"
            for name in payload
            if name not in known
        ]

    def _property_names(self, schema: Mapping[str, Any]) -> set[str] | None:
        """Names a body schema allows, or None when it allows anything."""
        schema = self._resolve(schema)
        if schema.get("additionalProperties") not in (None, False):
            return None
        names = set(schema.get("properties", {}))
        for key in ("oneOf", "anyOf", "allOf"):
            for alternative in schema.get(key, []):
                more = self._property_names(alternative)
                if more is None:
                    return None
                names |= more
        return names

    def _resolve(self, schema: Mapping[str, Any]) -> Mapping[str, Any]:
        while "$ref" in schema:
            node: Any = self._spec
            for part in schema["$ref"].removeprefix("#/").split("/"):
                node = node[part]
            schema = node
        return schema
