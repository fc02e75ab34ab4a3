"""The OpenAPI document says everything the service answers, not only what handler signatures
show.

Litestar documents each handler's success response and a generic 400. The service also answers
problem+json 400/401/403/404/408/409/413/415/422/503, takes the bearer key and an Idempotency-Key
header, refuses ids that do not match the id pattern and bodies with unknown fields. Each
operation is completed here when the document is first built (lazily: apps that never serve it
pay nothing), from the handler's role, whether it takes a body, and the tables below for what no
signature shows. Fuzzers (tests/hostile) check every answer against the completed document.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import msgspec
from litestar import Litestar
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.spec import (
    Components,
    Link,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Parameter,
    Reference,
    Schema,
    SecurityScheme,
)
from litestar.params import KwargDefinition
from litestar.plugins import OpenAPISchemaPlugin
from litestar.typing import FieldDefinition

from omnistock.api.auth import Role
from omnistock.api.idempotency import MAX_KEY
from omnistock.domain.ids import ID_PATTERN

if TYPE_CHECKING:
    from litestar._openapi.schema_generation import SchemaCreator

PROBLEM_MEDIA_TYPE = "application/problem+json"
SECURITY = "bearer"
COMPONENTS = Components(
    security_schemes={
        SECURITY: SecurityScheme(
            type="http", scheme="bearer", description="an API key: Authorization: Bearer <key>"
        )
    }
)

# Operations that take an Idempotency-Key: required where a request creates or moves stock and
# a retry must not do it twice, optional on the steps and counts that accept one.
IDEMPOTENCY_REQUIRED = frozenset(
    {"reserve", "adjustStock", "placeHold", "requestTransfer", "placeOrder"}
)
IDEMPOTENCY_OPTIONAL = frozenset(
    {
        "setStock",
        "commitReservation",
        "releaseReservation",
        "readyHold",
        "collectHold",
        "cancelHold",
        "shipTransfer",
        "receiveTransfer",
        "cancelTransfer",
    }
)
# Operations on a resource named in the path that may not exist (a stock count needs its node).
NOT_FOUND = frozenset(
    {
        "getNode",
        "setStock",
        "getReservation",
        "commitReservation",
        "releaseReservation",
        "getHold",
        "readyHold",
        "collectHold",
        "cancelHold",
        "getTransfer",
        "shipTransfer",
        "receiveTransfer",
        "cancelTransfer",
    }
)
# Create-or-replace: 201 when created, 200 when replaced, the same body.
CREATED_OR_REPLACED = frozenset({"putNode"})
# Answers without waiting on anything, so no deadline or dependency can make them 503.
NEVER_UNAVAILABLE = frozenset({"health"})
# Readiness answers 503 with its own body, saying which dependency failed.
OWN_503 = frozenset({"readiness"})

# OpenAPI links: where an id in a response leads (clients, and stateful fuzzers that chain
# calls). operation id -> (statuses it links from, [(link name, target operation id,
# {target path parameter: runtime expression})]).
_BY_RESERVATION = [
    (name, target, {"reservation_id": "$response.body#/reservation_id"})
    for name, target in (
        ("GetReservation", "getReservation"),
        ("CommitReservation", "commitReservation"),
        ("ReleaseReservation", "releaseReservation"),
    )
]
_BY_HOLD = [
    (name, target, {"hold_id": "$response.body#/hold_id"})
    for name, target in (
        ("GetHold", "getHold"),
        ("ReadyHold", "readyHold"),
        ("CollectHold", "collectHold"),
        ("CancelHold", "cancelHold"),
    )
]
_BY_TRANSFER = [
    (name, target, {"transfer_id": "$response.body#/transfer_id"})
    for name, target in (
        ("GetTransfer", "getTransfer"),
        ("ShipTransfer", "shipTransfer"),
        ("ReceiveTransfer", "receiveTransfer"),
        ("CancelTransfer", "cancelTransfer"),
    )
]
_BY_NODE = [
    (name, target, {"node_id": "$response.body#/node_id"})
    for name, target in (
        ("GetNode", "getNode"),
        ("SetStock", "setStock"),
        ("GetStock", "getStock"),
        ("StockHistory", "stockHistory"),
    )
]
LINKS: dict[str, tuple[tuple[str, ...], list[tuple[str, str, dict[str, str]]]]] = {
    "reserve": (("201",), _BY_RESERVATION),
    "placeOrder": (("201",), _BY_RESERVATION),
    "commitReservation": (("200",), _BY_RESERVATION[:1]),
    "releaseReservation": (("200",), _BY_RESERVATION[:1]),
    # A hold sourced elsewhere names the transfer that brings its goods to the store.
    "placeHold": (
        ("201",),
        [*_BY_HOLD, *(("Hold" + n, t, p) for n, t, p in _BY_TRANSFER if t != "cancelTransfer")],
    ),
    "readyHold": (("200",), [_BY_HOLD[0], _BY_HOLD[2], _BY_HOLD[3]]),
    "requestTransfer": (("201",), _BY_TRANSFER),
    "shipTransfer": (("200",), [_BY_TRANSFER[0], _BY_TRANSFER[2]]),
    "putNode": (("200", "201"), _BY_NODE),
}

_STR = Schema(type=OpenAPIType.STRING)
_INT = Schema(type=OpenAPIType.INTEGER)
PROBLEM = Schema(
    type=OpenAPIType.OBJECT,
    required=["type", "title", "status", "detail"],
    properties={
        "type": _STR,
        "title": _STR,
        "status": _INT,
        "detail": _STR,
        "field": Schema(
            type=OpenAPIType.STRING, description="the offending field, header or parameter"
        ),
        "shortages": Schema(
            type=OpenAPIType.ARRAY,
            items=Schema(
                type=OpenAPIType.OBJECT,
                required=["node_id", "sku", "requested", "available"],
                properties={"node_id": _STR, "sku": _STR, "requested": _INT, "available": _INT},
            ),
        ),
    },
)
_PROBLEM_TEXT = {
    400: "Malformed JSON, or a missing or bad Idempotency-Key",
    401: "No API key, or an unknown one",
    403: "The key's role is too low for this operation",
    404: "No such resource",
    409: "Not enough stock (with shortages), an illegal state change, a version mismatch, or "
    "the first request with this Idempotency-Key still running",
    408: "The body did not arrive within the request timeout",
    413: "Body too large",
    415: "The body is not application/json",
    422: "Invalid input, naming the field; or an Idempotency-Key reused for another request",
    503: "A dependency did not answer within the request timeout",
}
_ID = Schema(type=OpenAPIType.STRING, pattern=ID_PATTERN, max_length=64)
_IDEMPOTENCY_KEY = Schema(
    type=OpenAPIType.STRING, min_length=1, max_length=MAX_KEY, pattern=r"^[\x20-\x7e]+$"
)


_ALIASES = {f.metadata.get("alias", f.name): f.name for f in dataclasses.fields(Schema) if f.init}
_NESTED = {"items", "not", "contains", "additionalProperties"}
_NESTED_LISTS = {"anyOf", "oneOf", "allOf", "prefixItems"}


class ExactStructSchemas(OpenAPISchemaPlugin):
    """msgspec structs documented by msgspec's own JSON Schema: every constraint the decoder
    enforces (id patterns inside lists, bounds of optional fields, ``additionalProperties:
    false`` for bodies that refuse unknown fields), which Litestar's generic generation loses."""

    def is_plugin_supported_field(self, field_definition: FieldDefinition) -> bool:
        return not field_definition.is_union and field_definition.is_subclass_of(msgspec.Struct)

    def to_openapi_schema(
        self, field_definition: FieldDefinition, schema_creator: SchemaCreator
    ) -> Schema:
        struct = field_definition.type_
        (_root,), definitions = msgspec.json.schema_components([struct])
        by_name = _structs_by_name(struct)

        def reference(ref: str) -> Schema | Reference:
            name = ref.rsplit("/", 1)[-1]
            return schema_creator.for_field_definition(
                FieldDefinition.from_annotation(by_name[name])
            )

        # Registered before its fields, so a struct that refers to itself finds its reference.
        schema = schema_creator.schema_registry.get_schema_for_field_definition(field_definition)
        filled = _schema_of(definitions[struct.__name__], reference)
        assert isinstance(filled, Schema)
        for name in _ALIASES.values():
            setattr(schema, name, getattr(filled, name))
        return schema


def _structs_by_name(root: type) -> dict[str, type]:
    found: dict[str, type] = {}

    def walk(info: Any) -> None:
        if isinstance(info, msgspec.inspect.StructType):
            if info.cls.__name__ in found:
                return
            found[info.cls.__name__] = info.cls
            for f in info.fields:
                walk(f.type)
            return
        for attr in ("item_type", "key_type", "value_type", "type"):
            if isinstance(sub := getattr(info, attr, None), msgspec.inspect.Type):
                walk(sub)
        for sub in getattr(info, "types", ()) or getattr(info, "item_types", ()) or ():
            walk(sub)

    walk(msgspec.inspect.type_info(root))
    return found


def _schema_of(node: dict[str, Any], reference: Any) -> Schema | Reference:
    if "$ref" in node:
        return reference(node["$ref"])
    kwargs: dict[str, Any] = {}
    for key, value in node.items():
        if key == "type":
            value = (
                [OpenAPIType(v) for v in value] if isinstance(value, list) else OpenAPIType(value)
            )
        elif key == "properties":
            value = {k: _schema_of(v, reference) for k, v in value.items()}
        elif key in _NESTED and isinstance(value, dict):
            value = _schema_of(value, reference)
        elif key in _NESTED_LISTS:
            value = [_schema_of(v, reference) for v in value]
        elif key not in _ALIASES:
            continue  # nothing msgspec emits for these bodies is lost here; see the test
        kwargs[_ALIASES[key]] = value
    return Schema(**kwargs)


def document_outcomes(app: Litestar) -> None:
    """Has every operation of ``app`` documented with all it answers (see the module doc)."""
    for route in app.routes:
        for handler in getattr(route, "route_handlers", ()):
            if isinstance(handler, HTTPRouteHandler) and handler.include_in_schema is not False:
                handler.operation_class = _completed(handler)


def _completed(handler: HTTPRouteHandler) -> type[Operation]:
    base = handler.operation_class
    role = handler.opt.get("role")
    has_body = "data" in handler.parsed_fn_signature.parameters
    writes = bool(handler.http_methods & {"POST", "PUT", "PATCH"})
    bounds = _integer_bounds(handler)

    @dataclasses.dataclass
    class Completed(base):  # type: ignore[valid-type,misc]
        def __post_init__(self) -> None:
            if hasattr(base, "__post_init__"):
                base.__post_init__(self)  # type: ignore[attr-defined]
            _complete(self, role, has_body, writes, bounds)

    return Completed


_BOUNDS = (
    ("ge", "minimum"),
    ("le", "maximum"),
    ("gt", "exclusive_minimum"),
    ("lt", "exclusive_maximum"),
)


def _integer_bounds(handler: HTTPRouteHandler) -> dict[str, dict[str, int]]:
    """The integer bounds of the handler's parameters, by parameter name, as declared. Litestar
    documents a required integer's bounds as floats, and ``float(2**63 - 1)`` is ``2**63``: a
    client (or a fuzzer) trusting the document would send a value the decoder refuses."""
    found: dict[str, dict[str, int]] = {}
    for name, field in handler.parsed_fn_signature.parameters.items():
        kwargs = field.kwarg_definition
        if not isinstance(kwargs, KwargDefinition):
            continue
        exact = {
            attr: value
            for key, attr in _BOUNDS
            if isinstance(value := getattr(kwargs, key), int) and not isinstance(value, bool)
        }
        if exact:
            found[getattr(kwargs, "query", None) or name] = exact
    return found


def _complete(
    op: Operation,
    role: Role | None,
    has_body: bool,
    writes: bool,
    bounds: dict[str, dict[str, int]],
) -> None:
    op_id = op.operation_id or ""
    idempotency = (
        "required"
        if op_id in IDEMPOTENCY_REQUIRED
        else "optional"
        if op_id in IDEMPOTENCY_OPTIONAL
        else None
    )
    parameters = list(op.parameters or [])
    for p in parameters:
        if isinstance(p, Parameter) and p.param_in == "path":
            p.schema = _ID
        elif isinstance(p, Parameter) and isinstance(p.schema, Schema) and p.name in bounds:
            for attr, value in bounds[p.name].items():
                if getattr(p.schema, attr) is not None:
                    setattr(p.schema, attr, value)
    if idempotency:
        parameters.append(
            Parameter(
                name="Idempotency-Key",
                param_in="header",
                required=idempotency == "required",
                schema=_IDEMPOTENCY_KEY,
                description="the same key and body again replay the first answer",
            )
        )
    op.parameters = parameters or None
    if role is not None:
        op.security = [{SECURITY: []}]

    responses = dict(op.responses or {})
    responses.pop("400", None)  # Litestar's generic validation body, which this API never sends
    if op_id in CREATED_OR_REPLACED:
        replaced = responses["200"]
        responses["201"] = OpenAPIResponse(description="Created", content=replaced.content)
    statuses: set[int] = set()
    if has_body or idempotency:
        statuses.add(400)
    if role is not None:
        statuses.add(401)
        if role > Role.STOREFRONT:
            statuses.add(403)
    if op_id in NOT_FOUND:
        statuses.add(404)
    if idempotency:
        statuses |= {409, 422}
    if has_body:
        statuses |= {408, 413, 422}
    if writes:
        statuses.add(415)
    if parameters:
        statuses.add(422)
    if op_id not in NEVER_UNAVAILABLE:
        statuses.add(503)
    for status in sorted(statuses):
        if status == 503 and op_id in OWN_503:
            ready = responses["200"]
            responses["503"] = OpenAPIResponse(
                description="Not ready: which dependency failed", content=ready.content
            )
            continue
        description = _PROBLEM_TEXT[status]
        if status == 422 and any(
            isinstance(p, Parameter) and p.param_in == "query" for p in parameters
        ):
            description += (
                "; or a query parameter this operation does not take, or one it takes once "
                "given more than once"
            )
        responses[str(status)] = OpenAPIResponse(
            description=description,
            content={PROBLEM_MEDIA_TYPE: OpenAPIMediaType(schema=PROBLEM)},
        )
    statuses_linked, links = LINKS.get(op_id, ((), []))
    for status in statuses_linked:
        responses[status].links = {
            name: Link(operation_id=target, parameters=dict(parameters))
            for name, target, parameters in links
        }
    op.responses = responses
