"""Every route that takes query parameters refuses one it does not take with 422 naming it, so a
misspelt parameter (``limt=10``, ``befor=42``) is never silently read as its default, and one it
takes once given twice (``after=1&after=2``), which would otherwise be read as one of the two.
Its known parameters still work beside the check."""

from __future__ import annotations

import pytest

from tests.api.conftest import auth, client  # noqa: F401

ROUTES = [
    ("/v1/availability/s-1", {"node_id": "n-1"}),
    ("/v1/events", {"after": 0, "limit": 5}),
    ("/v1/stock/n-1/s-1/history", {"limit": 5, "before": 7}),
]


@pytest.mark.parametrize(("path", "known"), ROUTES)
async def test_an_unknown_query_parameter_is_refused_naming_it(
    client,  # noqa: F811
    path: str,
    known: dict,
) -> None:
    ok = await client.get(path, params=known, headers=auth("admin"))
    assert ok.status_code == 200, ok.text

    for unknown in ("limt", "é\u2603", "near_km"):
        refused = await client.get(path, params={**known, unknown: "1"}, headers=auth("admin"))
        assert refused.status_code == 422, (unknown, refused.text)
        assert refused.headers["content-type"] == "application/problem+json"
        problem = refused.json()
        assert problem["field"] == unknown
        assert problem["detail"].endswith("unknown query parameter")


def test_each_operation_enforces_exactly_the_query_parameters_it_documents() -> None:
    """What a route declares it takes (``opt``, enforced by route_rules) and what its OpenAPI
    entry documents are the same names, for every operation: a parameter added to one and not
    the other would be refused though documented, or taken though undocumented."""
    from tests.hostile.support import offline_app, served_document

    documented = {
        op["operationId"]: {p["name"] for p in op.get("parameters", []) if p["in"] == "query"}
        for item in served_document()["paths"].values()
        for op in item.values()
        if isinstance(op, dict) and "operationId" in op
    }
    declared = {
        handler.operation_id: set(handler.opt.get("query", ()))
        for route in offline_app().routes
        for handler in getattr(route, "route_handlers", [])
        if isinstance(handler.operation_id, str)
    }
    assert set(documented) <= set(declared)
    assert {op: declared[op] for op in documented} == documented
    assert sum(1 for names in documented.values() if names) == 7


def test_the_document_says_unknown_query_parameters_are_refused() -> None:
    from tests.hostile.support import served_document

    paths = served_document()["paths"]
    for path in ("/v1/availability/{sku}", "/v1/events", "/v1/stock/{node_id}/{sku}/history"):
        description = paths[path]["get"]["responses"]["422"]["description"]
        assert "query parameter this operation does not take" in description, path


REPEATED = [
    ("/v1/events", "after", {"limit": 5}),
    ("/v1/events", "limit", {"after": 0}),
    ("/v1/stock/n-1/s-1/history", "before", {"limit": 5}),
    ("/v1/reservations", "limit", {}),
    ("/v1/holds", "status", {}),
    ("/v1/availability/s-1", "near", {}),
]


@pytest.mark.parametrize(("path", "name", "others"), REPEATED)
async def test_a_single_valued_parameter_given_twice_is_refused_naming_it(
    client,  # noqa: F811
    path: str,
    name: str,
    others: dict,
) -> None:
    value = {"near": "52.5,13.4", "status": "placed"}.get(name, "3")
    once = await client.get(path, params={**others, name: value}, headers=auth("admin"))
    assert once.status_code == 200, once.text

    twice = [*others.items(), (name, value), (name, value)]
    refused = await client.get(path, params=twice, headers=auth("admin"))
    assert refused.status_code == 422, refused.text
    assert refused.json()["field"] == name
    assert "more than once" in refused.json()["detail"]


async def test_node_id_may_repeat_on_availability(client) -> None:  # noqa: F811
    params = [("node_id", "n-1"), ("node_id", "n-2")]
    ok = await client.get("/v1/availability/s-1", params=params, headers=auth("admin"))
    assert ok.status_code == 200, ok.text
