"""The dashboard's static files: served at /ui without a key, with their media types and a
content security policy that keeps the page to its own origin; nothing else is served from the
folder; the routes are not part of the OpenAPI document.

What the page does in a browser is tested in tests/browser/.
"""

from __future__ import annotations

import re
from importlib import resources

import pytest
from litestar.testing import AsyncTestClient

from omnistock.api.controllers.ui import assets
from tests.api.support import assert_problem
from tests.hostile.support import served_document

UI = resources.files("omnistock.api").joinpath("ui")


async def test_the_page_is_served_without_a_key_with_a_strict_policy(
    client: AsyncTestClient,
) -> None:
    for path in ("/ui", "/ui/"):
        response = await client.get(path)
        assert response.status_code == 200, (path, response.text)
        assert response.headers["content-type"].startswith("text/html")
        assert response.content == UI.joinpath("index.html").read_bytes()
        policy = response.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "script-src 'self'" in policy
        assert "connect-src 'self'" in policy
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"


async def test_every_asset_the_page_names_is_served_with_its_media_type(
    client: AsyncTestClient,
) -> None:
    page = UI.joinpath("index.html").read_text()
    named = re.findall(r'(?:src|href)="/ui/([^"]+)"', page)
    assert any(n.endswith(".js") for n in named) and any(n.endswith(".css") for n in named)
    types = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
    for name in named:
        response = await client.get(f"/ui/{name}")
        assert response.status_code == 200, name
        assert response.headers["content-type"].startswith(types["." + name.rpartition(".")[2]])
        assert response.content == UI.joinpath(name).read_bytes()


async def test_the_page_loads_nothing_from_elsewhere() -> None:
    """No script, style, font or tile from another origin: the policy would block it anyway,
    and the dashboard must work where the machine reaches nothing but the service."""
    for name, (body, _media_type) in assets().items():
        text = body.decode()
        assert not re.search(r"(?:src|href)\s*=\s*[\"']?(?:https?:)?//", text), name
        assert "@import url(http" not in text and "fonts.g" not in text, name
        # Keys go in the Authorization header, never in a URL.
        assert "?key=" not in text and "api_key=" not in text, name


@pytest.mark.parametrize("path", ["/ui/missing.js", "/ui/..%2Fapp.py", "/ui/__init__.py"])
async def test_anything_else_is_not_found(client: AsyncTestClient, path: str) -> None:
    assert_problem(await client.get(path), 404)


def test_the_dashboard_is_not_in_the_api_document() -> None:
    assert not [p for p in served_document()["paths"] if p.startswith("/ui")]
