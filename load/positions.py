"""Reads every position of a set of SKUs through the API: which nodes hold a SKU from
`POST /v1/availability/query` (500 SKUs a request), then `GET /v1/stock/{node_id}/{sku}` for
each of them, many at a time. Needs a key with the oms role or above."""

from __future__ import annotations

from collections.abc import Sequence

from load.conservation import Position
from load.http import Api

QUERY_MAX = 500


def read_all(api: Api, skus: Sequence[str]) -> list[Position]:
    chunks = [list(skus[i : i + QUERY_MAX]) for i in range(0, len(skus), QUERY_MAX)]
    found = api.map(
        lambda chunk: api.call("POST", "/v1/availability/query", json={"skus": chunk}).json(),
        chunks,
    )
    pairs = [
        (n["node_id"], item["sku"])
        for page in found
        for item in page["items"]
        for n in item["nodes"]
    ]
    return api.map(
        lambda pair: Position.from_json(api.call("GET", f"/v1/stock/{pair[0]}/{pair[1]}").json()),
        pairs,
    )
