"""The dashboard in a real browser: Debian's headless Chromium, driven by Playwright, against a
real ``omnistock serve`` with a data directory of its own and known keys.

The module seeds a small network and stock through the API, signs in on /ui with a key, and
checks what a person would: every node on the map, a SKU's figures in the table and on the map,
a sale made elsewhere showing up within seconds through the live stream, a quote for every
strategy with the chosen plan drawn on the map with its costs, an order placed with its
reservation id shown, the reservation in the open reservations list, and a commit from that list.
It saves a screenshot to ``tests/browser/artifacts/dashboard.png`` and prints its path.

The browser is the system's (``/usr/bin/chromium``, ``apt-get install -y chromium``); Playwright
drives it and never downloads one. The page must load nothing from elsewhere and break no rule
of its content security policy: any console error (but the API's 4xx answers) fails the test.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest

from tests.api.conftest import KEYS
from tests.hostile.support import Served, start_serve, stop_serve

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).parent / "artifacts"
SCREENSHOT = ARTIFACTS / "dashboard.png"
VIEWPORT = {"width": 1440, "height": 1000}
WAIT_MS = 10_000
LIVE_WAIT_MS = 5_000

SHOE = "sku-runner-42"
JACKET = "sku-jacket-m"


class Site(NamedTuple):
    node_id: str
    name: str
    kind: str
    lat: float
    lon: float
    cost: tuple[float, float, float]  # per_shipment, per_km, per_unit
    stock: dict[str, int]
    pickup: bool = False
    priority: int = 100


# Costs differ by site, so the strategies choose different plans for the playground's order.
# fmt: off
NETWORK = [
    Site("wh-berlin", "Berlin DC", "warehouse", 52.52, 13.405, (4, 0.01, 0.5), {SHOE: 40},
         priority=10),
    Site("wh-hamburg", "Hamburg DC", "warehouse", 53.551, 9.994, (4, 0.01, 3),
         {SHOE: 25, JACKET: 10}),
    Site("st-munich", "Munich Marienplatz", "store", 48.137, 11.575, (5.5, 0.015, 1.2),
         {SHOE: 6}, pickup=True),
    Site("st-cologne", "Cologne Hohe Str.", "store", 50.938, 6.957, (5.5, 0.015, 1.2),
         {SHOE: 3}, pickup=True),
    Site("ds-frankfurt", "Frankfurt dark store", "dark_store", 50.11, 8.682, (3, 0.02, 0.8),
         {SHOE: 12}),
    Site("dp-leipzig", "Leipzig partner", "dropship", 51.34, 12.375, (6, 0.01, 0.3),
         {JACKET: 5}),
]
# fmt: on
SHOE_TOTAL = 40 + 25 + 6 + 3 + 12
NO_FIGURE = "\N{EN DASH}"  # what the table shows for a node without the SKU


def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS['admin']}"}


def call(served: Served, method: str, path: str, **kwargs: Any) -> Any:
    headers = {**admin(), **kwargs.pop("headers", {})}
    response = httpx.request(method, served.base + path, headers=headers, timeout=10, **kwargs)
    assert response.status_code < 300, (method, path, response.status_code, response.text)
    return response.json()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    s = start_serve(tmp_path_factory.mktemp("dashboard"))
    try:
        for site in NETWORK:
            per_shipment, per_km, per_unit = site.cost
            body = {
                "name": site.name,
                "kind": site.kind,
                "lat": site.lat,
                "lon": site.lon,
                "ships": True,
                "pickup": site.pickup,
                "priority": site.priority,
                "cost": {"per_shipment": per_shipment, "per_km": per_km, "per_unit": per_unit},
            }
            call(s, "PUT", f"/v1/nodes/{site.node_id}", json=body)
            for sku, on_hand in site.stock.items():
                call(s, "PUT", f"/v1/stock/{site.node_id}/{sku}", json={"on_hand": on_hand})
        yield s
    finally:
        stop_serve(s)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the dashboard test drives Debian's Chromium. "
            "Install it with: sudo apt-get install -y chromium"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


# Chromium logs every HTTP error answer as a console error; the API's refusals are expected.
REFUSED_BY_API = re.compile(r"^Failed to load resource: the server responded with a status of 4")


def console_error(page: Any, message: Any) -> None:
    if message.type == "error" and not REFUSED_BY_API.match(message.text):
        page.errors.append(message.text)


@pytest.fixture(scope="module")
def page(browser: Any, served: Served) -> Iterator[Any]:
    """The dashboard signed in with the admin key; console errors and request URLs kept."""
    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.errors = []  # type: ignore[attr-defined]
    page.urls = []  # type: ignore[attr-defined]
    page.on("console", lambda m: console_error(page, m))
    page.on("pageerror", lambda e: page.errors.append(str(e)))  # type: ignore[attr-defined]
    page.on("request", lambda r: page.urls.append(r.url))  # type: ignore[attr-defined]
    page.goto(f"{served.base}/ui")
    page.wait_for_selector("#login-form")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "login.png"))
    page.fill("#api-key", KEYS["admin"])
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#dashboard:not([hidden])")
    try:
        yield page
    finally:
        context.close()


def wait_for_text(page: Any, selector: str, text: str, timeout_ms: int = WAIT_MS) -> None:
    page.wait_for_function(
        "([s, t]) => document.querySelector(s)?.textContent.trim() === t",
        arg=[selector, text],
        timeout=timeout_ms,
    )


def avail_cell(node_id: str) -> str:
    return f'#stock-table tr[data-node-id="{node_id}"] td.avail .figure-text'


def test_the_map_shows_every_node_and_a_skus_stock(page: Any) -> None:
    page.wait_for_function(
        "n => document.querySelectorAll('#map .layer-nodes g.node').length === n",
        arg=len(NETWORK),
    )
    on_map = page.eval_on_selector_all(
        "#map .layer-nodes g.node", "gs => gs.map(g => [g.dataset.nodeId, g.getAttribute('class')])"
    )
    assert sorted(map(tuple, on_map)) == sorted((n.node_id, f"node kind-{n.kind}") for n in NETWORK)
    # Every node inside the drawing, each where no other is.
    points = page.eval_on_selector_all(
        "#map .layer-nodes g.node",
        "gs => gs.map(g => { const r = g.getBoundingClientRect(); return [r.x, r.y]; })",
    )
    box = page.locator("#map").bounding_box()
    assert all(
        box["x"] <= x <= box["x"] + box["width"] and box["y"] <= y <= box["y"] + box["height"]
        for x, y in points
    )
    assert len({(round(x), round(y)) for x, y in points}) == len(NETWORK)
    # The name on hover.
    page.hover('#map g.node[data-node-id="wh-hamburg"]')
    assert "Hamburg DC" in page.inner_text("#map-tooltip")

    page.fill("#sku", SHOE)
    page.click("#sku-form button")
    wait_for_text(page, "#sku-total", str(SHOE_TOTAL))
    for site in NETWORK:
        expected = str(site.stock[SHOE]) if SHOE in site.stock else NO_FIGURE
        wait_for_text(page, avail_cell(site.node_id), expected)
        label = f'#map .layer-labels g.figure[data-node-id="{site.node_id}"] text'
        if SHOE in site.stock:
            assert page.text_content(label) == expected
        else:  # no figure on the map for a node that has never had the SKU
            assert page.locator(label).count() == 0
    assert page.inner_text("#sku-nodes") == "5"
    assert page.locator("#map .layer-bubbles circle.bubble").count() == 5


def test_a_sale_shows_on_the_page_within_seconds(page: Any, served: Served) -> None:
    page.wait_for_function(
        "() => ['live', 'unsupported', 'refused'].includes("
        "document.querySelector('#live-status').dataset.state)"
    )
    live_state = page.get_attribute("#live-status", "data-state")
    if live_state == "unsupported":
        pytest.skip("the service has no GET /v1/availability/stream yet: the page polls instead")
    assert live_state == "live"

    call(
        served,
        "POST",
        "/v1/stock/adjustments",
        json={
            "adjustments": [{"node_id": "wh-berlin", "sku": SHOE, "delta": -3, "reason": "sale"}]
        },
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )

    started = time.monotonic()
    wait_for_text(page, avail_cell("wh-berlin"), "37", LIVE_WAIT_MS)
    wait_for_text(page, "#sku-total", str(SHOE_TOTAL - 3), LIVE_WAIT_MS)
    wait_for_text(page, '#map g.figure[data-node-id="wh-berlin"] text', "37", LIVE_WAIT_MS)
    print(f"sale shown on the page {time.monotonic() - started:.2f} s after it was acknowledged")
    assert page.get_attribute("#live-status", "data-state") == "live"


def test_quote_place_an_order_and_find_it_in_the_open_reservations(
    page: Any, served: Served
) -> None:
    # Lines: the chosen SKU is already on the first line; two of it and a jacket.
    assert page.input_value("#lines .line-sku") == SHOE
    page.fill("#lines .line-qty", "2")
    page.click("#add-line")
    page.locator("#lines .line-sku").nth(1).fill(JACKET)
    # Destination: a click on the map, a little east of Munich.
    munich = page.locator('#map g.node[data-node-id="st-munich"]').bounding_box()
    page.mouse.click(munich["x"] + munich["width"] / 2 + 40, munich["y"] + munich["height"] / 2)
    lat, lon = float(page.input_value("#dest-lat")), float(page.input_value("#dest-lon"))
    assert 47.5 < lat < 48.8 and 11.6 < lon < 13.5, (lat, lon)

    page.click("#quote")
    page.wait_for_function(
        "() => document.querySelectorAll('#quote-results tbody tr[data-strategy] .total-cost')"
        ".length === 4"
    )
    lines = [{"sku": SHOE, "qty": 2}, {"sku": JACKET, "qty": 1}]
    quotes = {
        strategy: call(
            served,
            "POST",
            "/v1/routing/quote",
            json={"lines": lines, "destination": {"lat": lat, "lon": lon}, "strategy": strategy},
        )
        for strategy in ("cost", "fewest_shipments", "closest", "priority")
    }
    chosen = quotes["cost"]
    assert chosen["shipments"] and not chosen["unfulfilled"]
    assert page.get_attribute('#quote-results tr[data-strategy="cost"]', "class") == "chosen shown"
    for strategy, plan in quotes.items():
        row = f'#quote-results tr[data-strategy="{strategy}"]'
        assert page.inner_text(f"{row} .total-cost").startswith(f"{plan['total_cost']:,.2f}")
        assert page.inner_text(f"{row} td:nth-child(2)") == str(len(plan["shipments"]))
    # The chosen plan on the map: a line from each shipping node, labelled with its cost.
    drawn = page.eval_on_selector_all(
        "#map .layer-plan g.plan-cost",
        "gs => gs.map(g => [g.dataset.shipmentNode, g.textContent])",
    )
    assert sorted(map(tuple, drawn)) == sorted(
        (s["node_id"], f"{s['cost']:.2f}") for s in chosen["shipments"]
    )
    assert page.locator("#map .layer-plan path.shipment-line").count() == len(chosen["shipments"])
    assert page.locator("#map .layer-plan g.destination").count() == 1

    page.click("#place-order")
    page.wait_for_selector("#order-result .reservation-id")
    rid = page.get_attribute("#order-result .reservation-id", "data-reservation-id")
    assert rid and page.inner_text("#order-result .reservation-id") == rid
    reservation = call(served, "GET", f"/v1/reservations/{rid}")
    assert reservation["status"] == "active"
    assert sorted((x["node_id"], x["sku"], x["qty"]) for x in reservation["lines"]) == sorted(
        (s["node_id"], x["sku"], x["qty"]) for s in chosen["shipments"] for x in s["lines"]
    )
    shown_nodes = page.eval_on_selector_all(
        "#order-result .order-shipments tr[data-node-id]", "rows => rows.map(r => r.dataset.nodeId)"
    )
    assert sorted(shown_nodes) == sorted({x["node_id"] for x in reservation["lines"]})
    assert page.inner_text("#order-result .order-cost") == f"{chosen['total_cost']:,.2f}"

    row = f'#reservations-table tr[data-reservation-id="{rid}"]'
    page.wait_for_selector(row)
    assert page.locator(row).locator(".chip").count() == len(reservation["lines"])

    ARTIFACTS.mkdir(exist_ok=True)
    page.hover('#map g.node[data-node-id="st-cologne"]')
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    print(f"dashboard screenshot: {SCREENSHOT.resolve()}")
    assert page.errors == []  # type: ignore[attr-defined]


def test_commit_from_the_open_reservations_list(page: Any, served: Served) -> None:
    rid = page.get_attribute(
        "#reservations-table tbody tr[data-reservation-id]", "data-reservation-id"
    )
    assert rid
    page.click(f'#reservations-table tr[data-reservation-id="{rid}"] button:has-text("Commit")')
    page.wait_for_selector(f'#reservations-table tr[data-reservation-id="{rid}"]', state="detached")
    assert call(served, "GET", f"/v1/reservations/{rid}")["status"] == "committed"


def test_a_pickup_quote_and_a_refused_order_show_plan_and_problem(page: Any) -> None:
    page.check("input[name=mode][value=pickup]")
    page.select_option("#pickup-node", "st-cologne")
    page.fill("#lines .line-qty >> nth=0", "1")
    page.click("#lines .line >> nth=1 >> button")  # one line left: a shoe
    page.click("#quote")
    page.wait_for_function(
        "() => document.querySelector('#quote-results tr[data-strategy=\"cost\"] .total-cost')"
        "?.textContent.startsWith('0.00')"
    )
    # Collected from the store's own shelf: no line to draw, the store marked as the pickup.
    assert page.locator('#map g.node.is-pickup[data-node-id="st-cologne"]').count() == 1
    assert page.locator("#map .layer-plan g.shipment[data-shipment-node=st-cologne]").count() == 1
    assert page.locator("#map .layer-plan g.destination").count() == 0

    page.fill("#lines .line-qty >> nth=0", "5000")
    page.click("#place-order")
    problem = page.locator("#route-error")
    problem.wait_for()
    assert page.inner_text("#route-error .problem-title").startswith("Insufficient stock (409)")
    assert page.locator("#route-error .shortages li").count() >= 1
    assert page.locator("#order-result .reservation-id").count() == 1  # the earlier order stays


def test_the_event_stream_parser_takes_events_split_anywhere(page: Any) -> None:
    """The page's text/event-stream parser, fed the stream in pieces cut at every awkward
    place: inside a line, between CR and LF, inside the blank line that ends an event."""
    text = (
        ': keep-alive\r\n\r\nevent: availability\r\ndata: {"sku": "a",\r\n'
        'data: "available": 3}\r\n\r\n: keep-alive\n\nevent: availability\ndata:{}\n\n'
        'data: plain\r\rid: 7\nevent: availability\ndata: {"sku": "b"}\n\n'
    )
    events = page.evaluate(
        """async (text) => {
          const { EventStreamParser } = await import("/ui/api.js");
          const results = new Set();
          for (let size = 1; size <= text.length; size++) {
            const parser = new EventStreamParser();
            const got = [];
            for (let i = 0; i < text.length; i += size) {
              got.push(...parser.push(text.slice(i, i + size)));
            }
            results.add(JSON.stringify(got));
          }
          return [...results].map((r) => JSON.parse(r));
        }""",
        text,
    )
    assert events == [
        [
            {"event": "availability", "data": '{"sku": "a",\n"available": 3}', "id": ""},
            {"event": "availability", "data": "{}", "id": ""},
            {"event": "message", "data": "plain", "id": ""},
            {"event": "availability", "data": '{"sku": "b"}', "id": "7"},
        ]
    ]


def test_a_lower_key_is_told_what_it_cannot_see_and_a_wrong_key_is_refused(
    browser: Any, served: Served
) -> None:
    context = browser.new_context(viewport=VIEWPORT)
    try:
        other = context.new_page()
        other.set_default_timeout(WAIT_MS)
        other.goto(f"{served.base}/ui")
        other.fill("#api-key", KEYS["storefront"][:-1] + "x")
        other.click("#login-form button[type=submit]")
        other.wait_for_selector("#login-error:not([hidden])")
        assert other.inner_text("#login-error .problem-title") == "Key not accepted (401)"

        other.fill("#api-key", KEYS["storefront"])
        other.click("#login-form button[type=submit]")
        other.wait_for_selector("#dashboard:not([hidden])")
        assert other.inner_text("#role") == "Storefront key"
        assert "needs an admin key" in other.inner_text("#map-error")
        assert "need an oms or admin key" in other.inner_text("#lists-error")
        other.fill("#sku", SHOE)
        other.click("#sku-form button")
        other.wait_for_function(
            "() => Number(document.querySelector('#sku-total').dataset.value) > 0"
        )
        # Signing out forgets the key: a reload asks for one again.
        other.click("#sign-out")
        other.reload()
        other.wait_for_selector("#login:not([hidden])")
        assert other.evaluate("() => sessionStorage.length") == 0
    finally:
        context.close()


def test_the_key_travels_in_a_header_never_in_a_url(page: Any) -> None:
    urls = page.urls  # type: ignore[attr-defined]
    assert any("/v1/" in url for url in urls)
    assert not [url for url in urls if any(key in url for key in KEYS.values())]
    assert all(url.startswith(page.url.split("/ui")[0]) for url in urls), (
        "a request left the origin"
    )
    assert page.errors == []  # type: ignore[attr-defined]
