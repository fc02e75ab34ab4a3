"""Stateful schemathesis over the document's OpenAPI links: sequences of calls where each step
takes the id a previous answer gave (reserve or place an order -> get/commit/release the
reservation; place a hold -> get/ready/collect/cancel it and ship/receive its transfer; request a
transfer -> get/ship/receive/cancel it; put a node -> get it, set/get its stock, its history).

What is proven, on the app as served (ASGI, edge layer included) with a Valkey and a SQLite file
of the module's own:

- no step answers 5xx, and every answer is one the document lists (status, media type, body
  schema, headers);
- a schema-valid step is accepted or refused only for a reason a schema cannot state (the oracle
  of ``tests.hostile.schema_support``: 401/403/404/409, a semantic 422, an Idempotency-Key this
  run already sent with another request);
- an id a 2xx answer has just given is never 404 at the operation its link leads to.

Steering, so that sequences get past "unknown node" and "not enough stock": three nodes (two
warehouses, one pickup store) hold ``STOCK`` units of three SKUs before the run, and a schemathesis
``flatmap_case`` hook rewrites ``STEERED_PERCENT`` % of the generated bodies to name them (node
ids, SKUs, quantities of 1 to 3, the store as hold and pickup store, a destination for an order
that has none, no ``if_version`` on a count, an Idempotency-Key of the step's own); the rest go
out as generated. Scenarios start only where resources are made (reserve, place an order, a
hold, a transfer, put a node); putting a node and placing an order are added as roots by hand:
schemathesis starts scenarios only at POSTs and list GETs, and takes ``order_id`` for an id no
operation produces, so without this neither would start a chain. Links inferred by schemathesis
itself are turned off: the run exercises the document's links. Schema-invalid requests are the
business of ``test_schema_fuzz``; here every step is generated schema-valid.

Coverage is counted per (operation, status, whether the step followed a link), printed with
``-s``, and the test asserts that the chains the links exist for did run (a reservation committed
or released through its link, a hold and a transfer moved on through theirs, a put node's stock
set). Default profile: ``SCENARIOS`` scenarios of up to ``STEPS`` steps, derandomized (about 10 s
on this machine); ``OMNISTOCK_FAULTS_PROFILE=full``: 500 scenarios of up to 25 steps, random
seeds, with shrinking (about 1.5 min). A run of 300 scenarios took every link to a 2xx: commit,
release, ready, collect, cancel, ship, receive, set stock.
"""

from __future__ import annotations

import copy
import itertools
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.errors import FlakyStrategyDefinition
from hypothesis.stateful import Bundle
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.engine.errors import is_inconsistent_replay
from schemathesis.generation.meta import TestPhase
from schemathesis.generation.stateful.state_machine import StepInput, StepOutput, normalize_name
from schemathesis.python import asgi as schemathesis_asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ensure_resource_availability,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.stateful import is_root_allowed, transition

from omnistock.runtime.valkey_server import EmbeddedValkey
from tests.hostile.schema_support import (
    DOCUMENT,
    SENT_KEYS,
    app_on,
    fresh_schema,
    own_valkey,  # noqa: F401
    schema_valid_is_accepted,
    sendable,
    with_key,
)
from tests.hostile.support import FULL

SCENARIOS = 500 if FULL else 60
STEPS = 25 if FULL else 12
STEERED_PERCENT = 85
MAX_STUCK = 5

SHIPPERS = ("sf-wh-a", "sf-wh-b")
STORE = "sf-store"
NODES = (*SHIPPERS, STORE)
SKUS = ("sf-sku-1", "sf-sku-2", "sf-sku-3")
STOCK = 1_000_000
NODE_BODIES = {
    "sf-wh-a": {"kind": "warehouse", "lat": 52.52, "lon": 13.40, "ships": True, "pickup": False},
    "sf-wh-b": {"kind": "warehouse", "lat": 48.14, "lon": 11.58, "ships": True, "pickup": False},
    STORE: {"kind": "store", "lat": 50.11, "lon": 8.68, "ships": True, "pickup": True},
}
STOCK_PATHS = {
    "PUT /v1/stock/{node_id}/{sku}",
    "GET /v1/stock/{node_id}/{sku}",
    "GET /v1/stock/{node_id}/{sku}/history",
}
EXTRA_ROOTS = ("PUT /v1/nodes/{node_id}", "POST /v1/orders")
CREATORS = ("POST /v1/reservations", "POST /v1/holds", "POST /v1/transfers", *EXTRA_ROOTS)
ID_PARAMETERS = ("reservation_id", "hold_id", "transfer_id", "node_id")


# -- the links in the document -------------------------------------------------------------------


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = DOCUMENT["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def test_links_lead_to_operations_with_ids_from_the_answer() -> None:
    """Every link names an operation of the document and fills only its path parameters, each
    from a property of the linked answer's body that every such answer has (but a hold's
    ``transfer_id``); the links the contract's chains need are there."""
    by_id = {
        op["operationId"]: op
        for item in DOCUMENT["paths"].values()
        for op in item.values()
        if isinstance(op, dict) and "operationId" in op
    }
    found = set()
    for source_id, op in by_id.items():
        for status, response in op["responses"].items():
            for name, link in (response.get("links") or {}).items():
                target = by_id[link["operationId"]]
                path_parameters = {p["name"] for p in target["parameters"] if p["in"] == "path"}
                assert set(link["parameters"]) <= path_parameters, (source_id, name)
                body = _resolve(response["content"]["application/json"]["schema"])
                for expression in link["parameters"].values():
                    prefix = "$response.body#/"
                    assert expression.startswith(prefix), (source_id, name, expression)
                    field = expression[len(prefix) :]
                    assert field in body["properties"], (source_id, name)
                    # a hold names a transfer only when its goods come from elsewhere
                    optional = source_id == "placeHold" and field == "transfer_id"
                    assert optional or field in body["required"], (source_id, name)
                found.add((source_id, status, link["operationId"]))
    wanted = {
        (source, status, target)
        for source, status, targets in (
            ("reserve", "201", ("getReservation", "commitReservation", "releaseReservation")),
            ("placeOrder", "201", ("getReservation", "commitReservation", "releaseReservation")),
            ("placeHold", "201", ("getHold", "readyHold", "collectHold", "cancelHold")),
            ("requestTransfer", "201", ("getTransfer", "shipTransfer", "receiveTransfer")),
            ("requestTransfer", "201", ("cancelTransfer",)),
            ("putNode", "201", ("getNode", "setStock", "getStock", "stockHistory")),
            ("putNode", "200", ("getNode", "setStock", "getStock", "stockHistory")),
        )
        for target in targets
    }
    assert wanted <= found, wanted - found


# -- steering -------------------------------------------------------------------------------------


_KEY_SERIAL = itertools.count()


@st.composite
def _steered(draw: st.DrawFn, case: Any) -> Any:
    if draw(st.integers(0, 99)) >= STEERED_PERCENT:
        return case
    label = case.operation.label
    if any(k.lower() == "idempotency-key" for k in case.headers or {}):
        # Generated keys repeat across steps (Hypothesis favours a few simple strings), and a
        # key sent again with another body is refused: the oracle accepts that, but a chain
        # would stop there. Steered steps get a key of their own.
        headers = {k: v for k, v in case.headers.items() if k.lower() != "idempotency-key"}
        case.headers = {**headers, "Idempotency-Key": f"steered-{next(_KEY_SERIAL)}"}
    if label in STOCK_PATHS and case.path_parameters:
        case.path_parameters = {**case.path_parameters, "sku": draw(st.sampled_from(SKUS))}
    if not isinstance(case.body, dict):
        return case
    body = copy.deepcopy(case.body)
    low = 0 if label.endswith("/receive") else 1
    for line in body.get("lines") or []:
        if isinstance(line, dict):
            line["sku"] = draw(st.sampled_from(SKUS))
            line["qty"] = draw(st.integers(low, 3))
            if "node_id" in line:
                line["node_id"] = draw(st.sampled_from(NODES))
    if label == "POST /v1/holds":
        body["store_id"] = STORE
        if body.get("source_node_id") is not None:
            body["source_node_id"] = draw(st.sampled_from(SHIPPERS))
    elif label == "POST /v1/transfers":
        body["from_node"] = draw(st.sampled_from(SHIPPERS))
        body["to_node"] = draw(st.sampled_from([n for n in NODES if n != body["from_node"]]))
    elif label == "POST /v1/orders":
        if body.get("pickup_node_id") is not None:
            body["pickup_node_id"] = STORE
        elif body.get("destination") is None:
            body["destination"] = {
                "lat": draw(st.floats(47.0, 55.0)),
                "lon": draw(st.floats(6.0, 15.0)),
            }
    elif label == "PUT /v1/stock/{node_id}/{sku}":
        body.pop("if_version", None)  # a version the new position cannot have: 409
    case.body = body
    return case


def flatmap_case(context: Any, case: Any) -> st.SearchStrategy[Any]:
    return _steered(case)


# -- checks ---------------------------------------------------------------------------------------


def linked_ids_are_found(ctx: Any, response: Any, case: Any) -> bool | None:
    """An id that a 2xx answer has just given is never 404 at the operation its link leads to
    (ids stay readable after commit, release, collect, cancel and expiry)."""
    if response.status_code != 404:
        return None
    parent = ctx.internals.find_parent(case_id=case.id)
    if parent is None:
        return None
    parent_response = ctx.internals.find_response(case_id=parent.id)
    if parent_response is None or not 200 <= parent_response.status_code < 300:
        return None
    try:
        given = parent_response.json()
    except ValueError:
        return None
    for name in ID_PARAMETERS:
        value = (case.path_parameters or {}).get(name)
        if isinstance(given, dict) and value is not None and given.get(name) == value:
            raise AssertionError(
                f"{case.operation.label} answered 404 for {name}={value!r}, which "
                f"{parent.operation.label} had just answered {parent_response.status_code} with"
            )
    return True


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    ensure_resource_availability,
    schema_valid_is_accepted,
    linked_ids_are_found,
]


# -- the machine ----------------------------------------------------------------------------------


def _seed(schema: Any) -> None:
    """The steered-to nodes and their stock, through the API."""
    ops = {r.ok().label: r.ok() for r in schema.get_all_operations()}
    for node_id, fields in NODE_BODIES.items():
        case = ops["PUT /v1/nodes/{node_id}"].Case(
            path_parameters={"node_id": node_id}, body={"name": node_id, **fields}
        )
        response = with_key(case, "admin").call()
        assert response.status_code in (200, 201), response.text
        for sku in SKUS:
            case = ops["PUT /v1/stock/{node_id}/{sku}"].Case(
                path_parameters={"node_id": node_id, "sku": sku}, body={"on_hand": STOCK}
            )
            response = with_key(case, "admin").call()
            assert response.status_code == 200, response.text


class Run:
    """What one module's runs saw: steps per (operation, status, via a link), scenarios ended,
    and every check failure (kept here too, so none is lost when Hypothesis gives up a run as
    inconsistent, see the test)."""

    def __init__(self) -> None:
        self.coverage: Counter = Counter()
        self.scenarios = 0
        self.failures: list[str] = []


def _machine(schema: Any, run: Run) -> type:
    base = schema.as_state_machine()
    ops = {r.ok().label: r.ok() for r in schema.get_all_operations()}
    extra: dict[str, Any] = {}
    for label in EXTRA_ROOTS:
        name = normalize_name(f"RANDOM -> {label}")
        if name in base.root_rules:
            continue
        extra[name] = transition(
            name=name,
            target=Bundle("catch_all"),
            precondition=is_root_allowed(label),
            input=ops[label]
            .as_strategy(generation_mode=GenerationMode.POSITIVE, phase=TestPhase.STATEFUL)
            .map(StepInput.initial),
        )

    # Scenarios start only where resources are made: a commit, ready or ship of a random id is
    # a 404 that test_schema_fuzz already covers, and here it would spend the step budget.
    dropped = {
        name
        for name in base.root_rules
        if name not in {normalize_name(f"RANDOM -> {label}") for label in CREATORS}
    }

    class OmnistockWorkflow(base):  # type: ignore[valid-type,misc]
        root_rules = (base.root_rules - dropped) | frozenset(extra)
        _root_labels = frozenset(CREATORS)

        def step(self, input: StepInput) -> StepOutput:
            output = super().step(input)
            linked = input.transition is not None and input.is_applied
            run.coverage[(input.case.operation.label, output.response.status_code, linked)] += 1
            return output

        def teardown(self) -> None:
            run.scenarios += 1
            super().teardown()

        def before_call(self, case: Any) -> None:
            with_key(sendable(case), "admin")

        def validate_response(
            self, response: Any, case: Any, additional_checks: Any = None, **kwargs: Any
        ) -> None:
            try:
                case.validate_response(
                    response, checks=CHECKS, transport_kwargs=kwargs or None, recorder=self.recorder
                )
            except Exception as exc:
                run.failures.append(f"{case.operation.label}: {exc}")
                raise
            finally:
                SENT_KEYS.record(case)

    for name, rule in extra.items():
        setattr(OmnistockWorkflow, name, rule)
    for name in dropped:
        setattr(OmnistockWorkflow, name, None)
    return OmnistockWorkflow


@pytest.fixture(scope="module")
def workflow(
    tmp_path_factory: pytest.TempPathFactory,
    own_valkey: EmbeddedValkey,  # noqa: F811
) -> Iterator[tuple[type, Run]]:
    data_dir: Path = tmp_path_factory.mktemp("stateful")
    app = app_on(data_dir, own_valkey)
    phases = {"stateful": {"inference": {"algorithms": []}, "generation": {"mode": "positive"}}}
    schema = fresh_schema(app, phases=phases)
    schema.hooks.register_hook_with_name(flatmap_case, "flatmap_case")
    run = Run()
    try:
        _seed(schema)
        yield _machine(schema, run), run
    finally:
        schemathesis_asgi.shutdown_lifespans()


def _count(coverage: Counter, label: str, statuses: range | tuple, *, linked: bool) -> int:
    return sum(
        n
        for (lab, status, was_linked), n in coverage.items()
        if lab == label and status in statuses and was_linked == linked
    )


def test_linked_sequences_get_documented_answers(workflow) -> None:
    """Runs scenarios until ``SCENARIOS`` have ended. The service's state carries over from one
    scenario to the next (stock, ids, expiry by the clock), so when Hypothesis replays a prefix
    of choices the answers, and hence which linked steps are possible, can differ: Hypothesis
    then stops with an inconsistent-generation error, which says nothing about the service. The
    run goes on with fresh choices (as schemathesis' own runner does) for as long as attempts
    still end scenarios; any check failure seen before is reported regardless."""
    machine, run = workflow
    started = time.monotonic()
    inconsistent = stuck = 0
    while run.scenarios < SCENARIOS:
        before = run.scenarios
        try:
            machine.run(
                settings=settings(
                    max_examples=SCENARIOS - run.scenarios,
                    stateful_step_count=STEPS,
                    deadline=None,
                    database=None,
                    derandomize=not FULL and inconsistent == 0,
                    phases=[Phase.generate, *([Phase.shrink] if FULL else [])],
                    suppress_health_check=list(HealthCheck),
                )
            )
            break
        except (FlakyStrategyDefinition, AssertionError) as exc:
            if isinstance(exc, AssertionError) and not is_inconsistent_replay(exc):
                raise
            assert not run.failures, run.failures
            inconsistent += 1
            stuck = stuck + 1 if run.scenarios == before else 0
            assert stuck < MAX_STUCK, "Hypothesis lost its way again before a scenario ended"
    elapsed = time.monotonic() - started
    coverage = run.coverage
    table = "\n".join(
        f"  {label:48} {status} {'link' if linked else 'drawn'} x{n}"
        for (label, status, linked), n in sorted(coverage.items())
    )
    print(
        f"\nstateful run: {run.scenarios} scenarios, {sum(coverage.values())} steps in "
        f"{elapsed:.1f} s ({inconsistent} restarts after inconsistent generation)\n{table}"
    )
    assert not run.failures, run.failures

    ok = range(200, 300)
    reservation_steps = sum(
        _count(coverage, f"POST /v1/reservations/{{reservation_id}}/{step}", ok, linked=True)
        for step in ("commit", "release")
    )
    assert _count(coverage, "POST /v1/reservations", (201,), linked=False) > 0, table
    assert reservation_steps > 0, table
    assert _count(coverage, "GET /v1/reservations/{reservation_id}", ok, linked=True) > 0, table
    assert _count(coverage, "POST /v1/holds", (201,), linked=False) > 0, table
    hold_steps = sum(
        _count(coverage, f"POST /v1/holds/{{hold_id}}/{step}", ok, linked=True)
        for step in ("ready", "collect", "cancel")
    )
    assert hold_steps > 0, table
    assert _count(coverage, "POST /v1/transfers", (201,), linked=False) > 0, table
    assert _count(coverage, "POST /v1/transfers/{transfer_id}/ship", ok, linked=True) > 0, table
    assert _count(coverage, "PUT /v1/stock/{node_id}/{sku}", ok, linked=True) > 0, table
