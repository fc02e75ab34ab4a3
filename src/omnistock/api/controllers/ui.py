"""The operations dashboard: a static page at /ui and its assets, served without a key.

The files themselves hold no data and no secret; the page asks its user for an API key, keeps it
in the tab's sessionStorage and sends it as ``Authorization: Bearer`` on every API call, so the
API's own roles decide what the dashboard can show and do. The assets are hand-written, read
once from the package, and served with a content security policy that lets the page load nothing
from anywhere but this origin. The routes are left out of the OpenAPI document: they are not
part of the API.
"""

from __future__ import annotations

import functools
from importlib import resources

from litestar import Controller, Response, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath

MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
INDEX = "index.html"
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@functools.cache
def assets() -> dict[str, tuple[bytes, str]]:
    """Every file of the ui folder by name, with its media type."""
    folder = resources.files("omnistock.api").joinpath("ui")
    found: dict[str, tuple[bytes, str]] = {}
    for item in folder.iterdir():
        suffix = "." + item.name.rpartition(".")[2]
        if item.is_file() and suffix in MEDIA_TYPES:
            found[item.name] = (item.read_bytes(), MEDIA_TYPES[suffix])
    return found


def _file(name: str) -> Response[bytes]:
    found = assets().get(name)
    if found is None:
        raise NotFoundException(f"no dashboard file {name}")
    body, media_type = found
    return Response(body, media_type=media_type, headers=HEADERS)


class DashboardController(Controller):
    path = "/ui"
    include_in_schema = False

    @get("/", operation_id="dashboard", summary="The operations dashboard")
    async def index(self) -> Response[bytes]:
        return _file(INDEX)

    @get("/{asset:str}", operation_id="dashboardAsset", summary="A file of the dashboard")
    async def asset(self, asset: FromPath[str]) -> Response[bytes]:
        return _file(asset)
