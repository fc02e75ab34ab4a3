"""Schemathesis against the OpenAPI document the app serves: no 5xx, and every answer is one the
document lists for the operation (status, media type, body schema, headers), with the admin key
(every operation reachable), with the storefront key (the 403s below the operation's role are
documented too) and with schema-invalid requests (refused with a 4xx; an operation that takes
query parameters refuses one it does not take).

Each operation is its own test case; Hypothesis draws ``EXAMPLES`` requests per operation and
mode (more with ``OMNISTOCK_FAULTS_PROFILE=full``) and sends them through the ASGI interface of
the app as served (edge layer included) on a Valkey of the module's own and a SQLite file.

Schema-valid requests must succeed or be refused for a reason a schema cannot state (see
``tests.hostile.schema_support``: stored state, a cross-field rule, an Idempotency-Key this run
already sent with another request). Any other 4xx to a schema-valid request fails: the document
would promise more than the service accepts.

The request is sent as generated except for the liberties of ``schema_support.sendable`` and the
role's API key, which is put in the case itself (``with_key``) so the checks judge what was
sent. Linked (stateful) runs are in ``test_schema_stateful``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi as schemathesis_asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from omnistock.runtime.valkey_server import EmbeddedValkey
from tests.hostile.schema_support import (
    DOCUMENT,
    SENT_KEYS,
    app_on,
    fresh_schema,
    own_valkey,  # noqa: F401
    scalar_sent_as_one_item_list,
    schema_valid_is_accepted,
    sendable,
    unknown_query_parameters_are_refused,
    with_key,
)
from tests.hostile.support import FULL

EXAMPLES = 300 if FULL else 12
STOREFRONT_EXAMPLES = 100 if FULL else 4
NEGATIVE_EXAMPLES = 200 if FULL else 8

LABELS = [
    f"{method.upper()} {path}"
    for path, item in DOCUMENT["paths"].items()
    for method in item
    if method in ("get", "put", "post", "patch", "delete")
]

# An event stream (GET /v1/availability/stream) never ends by itself: schemathesis keeps what
# it sent within the read timeout (10 s by default) and checks each event against the document;
# a short timeout keeps the run short (the first events go out at once).
STREAM_READ_S = 0.3
EVENT_STREAMS = {
    f"{method.upper()} {path}"
    for path, item in DOCUMENT["paths"].items()
    for method, op in item.items()
    if isinstance(op, dict)
    and "text/event-stream" in op.get("responses", {}).get("200", {}).get("content", {})
}

RESPONSE_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


@pytest.fixture(scope="module")
def operations(
    tmp_path_factory: pytest.TempPathFactory,
    own_valkey: EmbeddedValkey,  # noqa: F811
) -> Iterator[dict[str, Any]]:
    """The document's operations, bound to a live app (schemathesis runs its lifespan)."""
    data_dir: Path = tmp_path_factory.mktemp("fuzz")
    app = app_on(data_dir, own_valkey)
    schema = fresh_schema(app)
    ops = {}
    for result in schema.get_all_operations():
        op = result.ok()
        op.app = app
        ops[op.label] = op
    try:
        yield ops
    finally:
        schemathesis_asgi.shutdown_lifespans()


def _fuzz(op: Any, role: str, mode: GenerationMode, examples: int, checks: list[Any]) -> None:
    @given(case=op.as_strategy(generation_mode=mode).map(sendable))
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=not FULL,
        phases=[Phase.explicit, Phase.generate, *([Phase.shrink] if FULL else [])],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        if mode == GenerationMode.NEGATIVE:
            assume(not scalar_sent_as_one_item_list(op, case))
        with_key(case, role)
        response = case.call(**({"timeout": STREAM_READ_S} if op.label in EVENT_STREAMS else {}))
        try:
            case.validate_response(response, checks=checks)
        finally:
            SENT_KEYS.record(case)

    run()


@pytest.mark.parametrize("label", LABELS)
def test_schema_valid_requests_as_admin_get_documented_answers(operations, label: str) -> None:
    _fuzz(
        operations[label],
        "admin",
        GenerationMode.POSITIVE,
        EXAMPLES,
        [*RESPONSE_CHECKS, schema_valid_is_accepted],
    )


@pytest.mark.parametrize("label", LABELS)
def test_storefront_gets_documented_answers_and_403_below_its_role(operations, label: str) -> None:
    _fuzz(
        operations[label],
        "storefront",
        GenerationMode.POSITIVE,
        STOREFRONT_EXAMPLES,
        [*RESPONSE_CHECKS, schema_valid_is_accepted],
    )


@pytest.mark.parametrize("label", LABELS)
def test_schema_invalid_requests_are_refused_with_documented_4xx(operations, label: str) -> None:
    op = operations[label]
    if not (op.path_parameters or op.query or op.body or op.headers):
        pytest.skip("nothing in the request can be invalid")
    _fuzz(
        op,
        "admin",
        GenerationMode.NEGATIVE,
        NEGATIVE_EXAMPLES,
        [*RESPONSE_CHECKS, negative_data_rejection, unknown_query_parameters_are_refused],
    )


def test_the_served_document_is_the_one_fuzzed(operations) -> None:
    """The fuzzed document is built offline; the live app serves the same one."""
    from schemathesis.python.asgi import get_client

    app = next(iter(operations.values())).app
    with get_client(app) as http:
        served = http.get("/schema/openapi.json")
    assert served.status_code == 200
    assert served.json() == DOCUMENT
