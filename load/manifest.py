"""The seed manifest: what a load test may touch, written by `load.seed`, read by the users.

A small JSON file: the nodes (id, kind, coordinates, pickup), the SKUs most popular first, the
hot SKUs of a flash sale, and which SKUs each node was seeded with (so a till sells what the
store stocks). API keys are never written here.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

VERSION = 1


@dataclass(frozen=True)
class NodeInfo:
    node_id: str
    kind: str
    lat: float
    lon: float
    pickup: bool


@dataclass(frozen=True)
class Manifest:
    url: str
    nodes: tuple[NodeInfo, ...]
    skus: tuple[str, ...]  # most popular first
    hot_skus: tuple[str, ...]
    stocked: dict[str, tuple[str, ...]]  # node_id -> SKUs seeded there
    seeded_units: int

    def to_json(self) -> dict:
        return {
            "version": VERSION,
            "url": self.url,
            "nodes": [
                {
                    "node_id": n.node_id,
                    "kind": n.kind,
                    "lat": n.lat,
                    "lon": n.lon,
                    "pickup": n.pickup,
                }
                for n in self.nodes
            ],
            "skus": list(self.skus),
            "hot_skus": list(self.hot_skus),
            "stocked": {node: list(skus) for node, skus in self.stocked.items()},
            "seeded_units": self.seeded_units,
        }

    @classmethod
    def from_json(cls, data: dict) -> Manifest:
        if data.get("version") != VERSION:
            raise ValueError(f"manifest version {data.get('version')!r}, expected {VERSION}")
        return cls(
            url=data["url"],
            nodes=tuple(NodeInfo(**n) for n in data["nodes"]),
            skus=tuple(data["skus"]),
            hot_skus=tuple(data["hot_skus"]),
            stocked={node: tuple(skus) for node, skus in data["stocked"].items()},
            seeded_units=int(data["seeded_units"]),
        )


def write(path: Path, manifest: Manifest) -> None:
    """Writes atomically (temp file and rename), so a reader never sees half a manifest."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".manifest-")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(manifest.to_json(), f, separators=(",", ":"))
    os.replace(tmp, path)


def read(path: Path) -> Manifest:
    with path.open(encoding="utf-8") as f:
        return Manifest.from_json(json.load(f))
