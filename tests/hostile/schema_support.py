"""What the schemathesis tests (``test_schema_fuzz``, ``test_schema_stateful``) share: the
document, an app on a Valkey of its own, how a generated request is made sendable, and the oracle
for schema-valid requests.

The oracle: a schema-valid request gets a 2xx or a refusal a schema cannot predict. Those are
401/403/404/409 (stored state: keys, resources, stock, versions), the semantic 422s in
``SEMANTIC_REFUSALS`` (rules of the contract relating fields or needing stored nodes), and an
``Idempotency-Key reused`` 422 when, and only when, this test run sent that key (under the same
API key) with another request before: keys are scoped to the calling API key and kept 48 hours,
so the app under test gets a Valkey of its own, where no other module's keys can be.
"""

from __future__ import annotations

import copy
import json
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from omnistock.api.app import create_asgi
from omnistock.domain.stock import MAX_QTY
from omnistock.runtime.valkey_server import EmbeddedValkey
from tests.api.conftest import KEYS, settings_for
from tests.hostile.support import served_document

DOCUMENT = served_document()
ROLE_OF_BEARER = {f"Bearer {key}": role for role, key in KEYS.items()}

# 422s that a schema-valid request may get: rules of the contract that depend on stored state
# or relate two fields, which JSON Schema cannot express. (field pattern, detail pattern)
SEMANTIC_REFUSALS = [
    # "Invalid input: ... unknown node in a body 422"
    (
        r"(lines|adjustments|orders)\[\d+\]\.node_id|store_id|source_node_id|from_node|to_node",
        "unknown",
    ),
    (r"pickup_node_id|orders\[\d+\]\.pickup_node_id", "unknown|pickup"),
    # holds: at a pickup node, sourced elsewhere than the store, a source or allow_transfer
    (r"store_id", "pickup"),
    (r"source_node_id", "store|differ|itself|same"),
    (r"allow_transfer", "source"),
    # transfers: between two nodes
    (r"to_node", "differ"),
    # a receipt names each SKU at most once (what arrived of it): a rule across array items
    # that JSON Schema cannot state (uniqueItems compares whole items, not one property)
    (r"lines\[\d+\]\.sku", "named twice"),
    # ... and only SKUs the transfer carries, no more than shipped: the transfer's stored lines
    (r"lines", "is not on transfer|shipped cannot arrive"),
    # stock adjustments move stock
    (r"adjustments\[\d+\]\.delta", "must not be 0"),
    # routing: somewhere to deliver to or collect from
    (r"(orders\[\d+\]\.)?destination", "destination or pickup_node_id"),
    # availability: a radius around a point, and a point within range (the string form of near)
    (r"radius_km", "needs near"),
    (r"near", "lat,lon"),
]


def _problem(response: Any) -> dict[str, Any]:
    try:
        problem = response.json()
    except ValueError:
        return {}
    return problem if isinstance(problem, dict) else {}


def _some_sku_over_the_limit(body: Any) -> bool:
    """Whether the body's lines ask for more than ``MAX_QTY`` of one SKU (at one node, where
    lines name nodes) in total. Lines naming the same SKU are added up before they are checked,
    each within the schema's bound but together beyond it: a rule across array items that JSON
    Schema cannot state."""
    lines = body.get("lines") if isinstance(body, dict) else None
    totals: Counter = Counter()
    for line in lines if isinstance(lines, list) else ():
        if isinstance(line, dict) and isinstance(line.get("qty"), int):
            totals[(line.get("node_id"), line.get("sku"))] += line["qty"]
    return any(total > MAX_QTY for total in totals.values())


def _refusal_is_semantic(problem: dict[str, Any]) -> bool:
    field, detail = str(problem.get("field") or ""), str(problem.get("detail") or "")
    return any(
        re.fullmatch(f, field) and re.search(d, detail, re.IGNORECASE) for f, d in SEMANTIC_REFUSALS
    )


# -- Idempotency-Keys sent ------------------------------------------------------------------------


def _header(case: Any, name: str) -> str | None:
    for key, value in (case.headers or {}).items():
        if key.lower() == name.lower():
            return value
    return None


def _request_of(case: Any) -> str:
    """What the service fingerprints under a key: method, path, body (here as sent; the service
    re-encodes the decoded body, so two spellings of one body may count as one request there and
    as two here, which only makes the oracle accept a reuse the service would have replayed)."""
    body = case.body
    try:
        body_text = json.dumps(body, sort_keys=True)
    except TypeError:
        body_text = repr(body)
    return f"{case.method.upper()} {unquote(case.formatted_path)} {body_text}"


class SentKeys:
    """Every (API key's role, Idempotency-Key) sent, with the requests sent under it."""

    def __init__(self) -> None:
        self._sent: dict[tuple[str, str], set[str]] = {}

    def clear(self) -> None:
        self._sent.clear()

    def record(self, case: Any) -> None:
        key = _header(case, "Idempotency-Key")
        role = ROLE_OF_BEARER.get(_header(case, "Authorization") or "")
        if key is not None and role is not None:
            self._sent.setdefault((role, key), set()).add(_request_of(case))

    def reused_for_another_request(self, case: Any) -> bool:
        """Whether this case's key was sent before with a request other than this one."""
        key = _header(case, "Idempotency-Key")
        role = ROLE_OF_BEARER.get(_header(case, "Authorization") or "")
        earlier = self._sent.get((role or "", key or ""), set())
        return bool(earlier - {_request_of(case)})


SENT_KEYS = SentKeys()


def schema_valid_is_accepted(ctx: Any, response: Any, case: Any) -> bool | None:
    """A schema-valid request gets a 2xx, or a documented refusal that needs stored state (401,
    403, 404, 409), a semantic 422, or an earned ``Idempotency-Key reused`` (see the module doc)."""
    status = response.status_code
    if status < 400 or status in (401, 403, 404, 409):
        return True
    problem = _problem(response)
    if status == 422 and _refusal_is_semantic(problem):
        return True
    if (
        status == 422
        and re.fullmatch(r"lines\[\d+\]\.qty", str(problem.get("field", "")))
        and _some_sku_over_the_limit(case.body)
    ):
        # The field names the index among the lines as merged by SKU, which can be another
        # line of the request than the ones that add up (reported, not asserted here).
        return True
    if (
        status == 422
        and str(problem.get("type", "")).endswith(":idempotency-key-reused")
        and SENT_KEYS.reused_for_another_request(case)
    ):
        return True
    raise AssertionError(
        f"schema-valid request to {case.operation.label} refused: {status} {response.text[:500]}"
    )


def unknown_query_parameters_are_refused(ctx: Any, response: Any, case: Any) -> bool | None:
    """An operation that takes query parameters refuses one it does not take (422, naming it),
    whatever else is wrong with the request (then any 4xx). Judged on the URL as sent: a
    generated extra parameter with an empty list as its value never reaches the wire."""
    documented = {p.name for p in case.operation.query}
    if not documented:
        return None  # routes without query parameters ignore a query string (see the report)
    sent = [
        unquote(part.partition("=")[0])
        for part in urlsplit(str(response.request.url)).query.split("&")
        if part
    ]
    unknown = [name for name in sent if name not in documented]
    if unknown and not 400 <= response.status_code < 500:
        raise AssertionError(
            f"{case.operation.label} answered {response.status_code} to unknown query "
            f"parameters {unknown!r}"
        )
    return True


# -- sending --------------------------------------------------------------------------------------


def _whole_floats_as_ints(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: _whole_floats_as_ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole_floats_as_ints(v) for v in value]
    return value


def sendable(case: Any) -> Any:
    """Two liberties with generated data, about how JSON and HTTP spell things rather than what
    the service accepts: a whole number drawn as ``2.0`` for an integer field is sent as ``2``
    (JSON Schema counts ``2.0`` as an integer; the service, like the contract's "integer
    quantities", takes only ``2``), and header values are sent without surrounding blanks (HTTP
    strips them)."""
    if isinstance(case.body, dict | list | float):
        case.body = _whole_floats_as_ints(case.body)
    if case.headers:
        case.headers = {k: v.strip() if isinstance(v, str) else v for k, v in case.headers.items()}
    return case


def scalar_sent_as_one_item_list(op: Any, case: Any) -> bool:
    """Whether a negative case turned a single-valued query parameter into a list of one item:
    sent, ``after=[0.0]`` reads ``after=0.0``, the same bytes as a valid value, which no server
    can tell apart (a list of two or more reads as the parameter given twice, which is refused)."""
    arrays = {
        param.name
        for param in op.query
        if (param.definition.get("schema") or {}).get("type") == "array"
    }
    return any(
        isinstance(value, list) and len(value) == 1 and name not in arrays
        for name, value in (case.query or {}).items()
    )


def with_key(case: Any, role: str) -> Any:
    """The case with this role's API key as its Authorization header, in the case itself (not
    as a transport override), so that every check judges the request as sent: a negative case
    whose only fault was a missing or malformed Authorization is then a valid request, and is
    judged as one. Authentication itself is tested by test_access_matrix and test_key_secrecy."""
    headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
    headers["Authorization"] = f"Bearer {KEYS[role]}"
    case.headers = headers
    return case


# -- the app --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def own_valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedValkey]:
    """A Valkey for one module: its Idempotency-Keys and stock are its own. Strict, like the
    session's: the app acknowledges writes only once they are on disk, and against a Valkey
    without ``appendfsync always`` each write would wait (WAITAOF) for the next fsync, up to a
    second."""
    server = EmbeddedValkey(tmp_path_factory.mktemp("schema-valkey"), durability="strict")
    server.start()
    try:
        yield server
        server.check()
    finally:
        server.stop()


# An event stream (GET /v1/availability/stream) sends one event per SKU and then only keep-alive
# comments until something changes: it is read up to its first complete event (which is checked
# against the document), not until the transport's read timeout.
CONFIG = {"max-stream-events": 1}


def fresh_schema(app: Any, **config: Any) -> Any:
    """The document as schemathesis reads it, bound to ``app``; ``config`` adds to ``CONFIG``."""
    import schemathesis
    from schemathesis.config import SchemathesisConfig

    settings = SchemathesisConfig.from_dict({**CONFIG, **config})
    schema = schemathesis.openapi.from_dict(copy.deepcopy(DOCUMENT), config=settings)
    schema.app = app
    return schema


def app_on(data_dir: Path, valkey: EmbeddedValkey) -> Any:
    SENT_KEYS.clear()
    return create_asgi(settings_for(data_dir, valkey.url))
