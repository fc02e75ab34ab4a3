// The operations dashboard: sign-in with an API key, the network map, live stock of one SKU,
// the routing playground and the lists of open reservations, holds and transfers.

import { api, ApiError, followAvailability, forgetKey, storedKey, storeKey, uuid } from "/ui/api.js";
import { KIND_LABELS, legendGlyph, NetworkMap } from "/ui/map.js";

const STRATEGIES = [
  ["cost", "Lowest cost"],
  ["fewest_shipments", "Fewest shipments"],
  ["closest", "Closest"],
  ["priority", "Priority"],
];
const CHOSEN = "cost";
const LIST_REFRESH_MS = 3000;
const POLL_MS = 2000;
const ID_PATTERN = /^[A-Za-z0-9._:-]{1,64}$/;
const SKU_ITEM = "omnistock.sku";

const $ = (selector) => document.querySelector(selector);

const state = {
  nodes: [],
  byId: new Map(),
  sku: null,
  availability: null,
  stopStream: null,
  pollTimer: null,
  listsTimer: null,
  clockTimer: null,
  quotes: new Map(),
  shownStrategy: CHOSEN,
  activeTab: "reservations",
};

let map;

// -- small helpers -------------------------------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "style") Object.assign(node.style, v); // CSSOM: the policy blocks style attributes
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function money(value) {
  return Number(value).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
}

function nodeName(id) {
  const node = state.byId.get(id);
  return node ? node.name : id;
}

function shortId(id) {
  return id.length > 16 ? `${id.slice(0, 8)}…${id.slice(-5)}` : id;
}

function ago(iso) {
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

function until(iso) {
  const s = Math.round((Date.parse(iso) - Date.now()) / 1000);
  if (s <= 0) return "due";
  const hours = Math.floor(s / 3600);
  const minutes = Math.floor((s % 3600) / 60);
  const seconds = s % 60;
  if (hours >= 24) return `${Math.floor(hours / 24)}d ${hours % 24}h`;
  if (hours) return `${hours}h ${String(minutes).padStart(2, "0")}m`;
  return `${minutes}:${String(seconds).padStart(2, "0")}`;
}

/** Shows an error as the API described it: title, detail, the field it names, shortages. */
function showProblem(target, err) {
  target.replaceChildren();
  if (!err) {
    target.hidden = true;
    return;
  }
  const problem = err instanceof ApiError ? err.problem : { title: "Error", detail: String(err.message || err) };
  const status = err instanceof ApiError && err.status ? ` (${err.status})` : "";
  target.append(h("strong", { class: "problem-title" }, `${problem.title || "Error"}${status}`));
  if (problem.detail) target.append(h("span", { class: "problem-detail" }, problem.detail));
  if (problem.field) target.append(h("span", { class: "problem-field" }, "Field: ", h("code", {}, problem.field)));
  if (Array.isArray(problem.shortages) && problem.shortages.length) {
    target.append(
      h(
        "ul",
        { class: "shortages" },
        problem.shortages.map((s) =>
          h("li", {}, `${s.sku} at ${nodeName(s.node_id)}: ${s.requested} requested, ${s.available} available`),
        ),
      ),
    );
  }
  target.hidden = false;
}

function lineChips(lines, render) {
  return h("div", { class: "chips" }, lines.map((line) => h("span", { class: "chip" }, render(line))));
}

// -- sign-in ---------------------------------------------------------------------------------------

async function probeRole() {
  await api("GET", "/v1/diagnostics/noop");
  try {
    await api("GET", "/v1/nodes");
    return "admin";
  } catch (err) {
    if (!(err instanceof ApiError) || err.status !== 403) throw err;
  }
  try {
    await api("GET", "/v1/reservations?limit=1");
    return "oms";
  } catch (err) {
    if (!(err instanceof ApiError) || err.status !== 403) throw err;
  }
  return "storefront";
}

function showLogin(err) {
  $("#dashboard").hidden = true;
  $("#session").hidden = true;
  $("#login").hidden = false;
  showProblem($("#login-error"), err);
  $("#api-key").value = "";
  $("#api-key").focus();
}

async function connect() {
  let role;
  try {
    role = await probeRole();
  } catch (err) {
    forgetKey();
    showLogin(err instanceof ApiError && err.status === 401 ? new ApiError(401, { title: "Key not accepted", detail: err.problem.detail }) : err);
    return;
  }
  $("#login").hidden = true;
  $("#dashboard").hidden = false;
  $("#session").hidden = false;
  $("#role").textContent = `${role[0].toUpperCase()}${role.slice(1)} key`;
  $("#role").dataset.role = role;
  document.body.dataset.role = role;
  await loadNodes();
  startLists();
  startClock();
  const remembered = sessionStorage.getItem(SKU_ITEM);
  if (remembered) {
    $("#sku").value = remembered;
    selectSku(remembered);
  }
}

function signOut() {
  forgetKey();
  sessionStorage.removeItem(SKU_ITEM);
  stopFollowing();
  clearInterval(state.listsTimer);
  clearInterval(state.clockTimer);
  setLive("off");
  showLogin(null);
}

// -- nodes and map ---------------------------------------------------------------------------------

async function loadNodes() {
  try {
    const body = await api("GET", "/v1/nodes");
    state.nodes = body.nodes;
    showProblem($("#map-error"), null);
  } catch (err) {
    state.nodes = [];
    const needsAdmin = err instanceof ApiError && err.status === 403;
    showProblem(
      $("#map-error"),
      needsAdmin ? new ApiError(403, { title: "The node map needs an admin key", detail: err.problem.detail }) : err,
    );
  }
  state.byId = new Map(state.nodes.map((n) => [n.node_id, n]));
  map.setNodes(state.nodes);
  const counts = {};
  for (const n of state.nodes) counts[n.kind] = (counts[n.kind] || 0) + 1;
  $("#map-summary").textContent = state.nodes.length ? `${state.nodes.length} nodes` : "";
  const legend = $("#legend");
  legend.replaceChildren(
    ...Object.keys(KIND_LABELS)
      .filter((kind) => counts[kind])
      .map((kind) => h("span", { class: "legend-item" }, legendGlyph(kind), `${KIND_LABELS[kind]} ${counts[kind]}`)),
  );
  const select = $("#pickup-node");
  const current = select.value;
  select.replaceChildren(
    ...state.nodes
      .filter((n) => n.pickup)
      .sort((a, b) => a.name.localeCompare(b.name))
      .map((n) => h("option", { value: n.node_id }, `${n.name} (${n.node_id})`)),
  );
  if (current && state.byId.has(current)) select.value = current;
  if (state.availability) renderAvailability(state.availability);
}

function pickDestination(point) {
  $("#dest-lat").value = point.lat;
  $("#dest-lon").value = point.lon;
  setMode("ship");
  map.setDestination(point);
}

// -- stock of one SKU --------------------------------------------------------------------------------

function setLive(stateName, detail) {
  const pill = $("#live-status");
  const text = {
    off: "Live updates off",
    connecting: "Connecting…",
    live: "Live",
    reconnecting: "Reconnecting…",
    unsupported: "Polling (no live stream)",
    refused: "Live updates refused",
  }[stateName];
  pill.dataset.state = stateName;
  pill.querySelector("span").textContent = text;
  pill.title = detail || "";
}

function stopFollowing() {
  if (state.stopStream) state.stopStream();
  state.stopStream = null;
  clearInterval(state.pollTimer);
  state.pollTimer = null;
}

async function selectSku(sku) {
  stopFollowing();
  state.sku = sku;
  state.availability = null;
  sessionStorage.setItem(SKU_ITEM, sku);
  const first = document.querySelector("#lines .line-sku");
  if (first && !first.value) first.value = sku;
  try {
    const body = await api("GET", `/v1/availability/${encodeURIComponent(sku)}`);
    if (state.sku !== sku) return;
    renderAvailability(body);
    showProblem($("#stock-error"), null);
  } catch (err) {
    showProblem($("#stock-error"), err);
    return;
  }
  state.stopStream = followAvailability([sku], {
    onAvailability: (body) => {
      if (body.sku === state.sku) renderAvailability(body);
    },
    onState: (name, detail) => {
      if (state.sku !== sku) return;
      setLive(name, detail);
      if (name === "unsupported" && !state.pollTimer) {
        state.pollTimer = setInterval(async () => {
          try {
            const body = await api("GET", `/v1/availability/${encodeURIComponent(sku)}`);
            if (state.sku === sku) renderAvailability(body);
          } catch {
            // shown by the next successful read; the pill says what mode this is
          }
        }, POLL_MS);
      }
    },
  });
}

function renderAvailability(body) {
  const previous = state.availability && state.availability.sku === body.sku ? state.availability : null;
  const before = new Map((previous ? previous.nodes : []).map((n) => [n.node_id, n.available]));
  state.availability = body;
  const total = body.available ?? body.total ?? body.nodes.reduce((sum, n) => sum + n.available, 0);
  const values = new Map(body.nodes.map((n) => [n.node_id, n.available]));
  $("#sku-total").textContent = total.toLocaleString("en-US");
  $("#sku-total").dataset.value = total;
  $("#sku-nodes").textContent = `${body.nodes.filter((n) => n.available > 0).length}`;
  if (!previous || previous.nodes.some((n) => values.get(n.node_id) !== n.available) || previous.nodes.length !== body.nodes.length) {
    $("#sku-updated").textContent = new Date().toLocaleTimeString("en-GB");
  }
  map.setAvailability(body);

  const ids = new Set([...state.byId.keys(), ...values.keys()]);
  const rows = [...ids].map((id) => ({ id, node: state.byId.get(id), value: values.get(id) }));
  rows.sort((a, b) => (b.value ?? -1) - (a.value ?? -1) || nodeName(a.id).localeCompare(nodeName(b.id)));
  const max = Math.max(1, ...rows.map((r) => r.value || 0));
  const tbody = $("#stock-table tbody");
  tbody.replaceChildren(
    ...rows.map(({ id, node, value }) => {
      const changed = previous && before.get(id) !== value;
      const cell = h(
        "td",
        { class: "num avail", dataset: { value: value ?? "" } },
        h("span", { class: "bar" }, h("i", { style: { width: `${(100 * (value || 0)) / max}%` } })),
        h("span", { class: "figure-text" }, value === undefined ? "–" : value.toLocaleString("en-US")),
      );
      return h(
        "tr",
        { dataset: { nodeId: id }, class: changed ? "changed" : value ? "" : "is-zero" },
        h("td", {}, h("span", { class: "node-name" }, node ? node.name : id), h("span", { class: "node-id" }, id)),
        h("td", {}, node ? h("span", { class: `kind kind-${node.kind}` }, KIND_LABELS[node.kind] || node.kind) : ""),
        cell,
      );
    }),
  );
}

// -- routing playground ----------------------------------------------------------------------------

function addLine(sku = "", qty = 1) {
  const row = h(
    "div",
    { class: "line" },
    h("input", { class: "line-sku", placeholder: "SKU", value: sku, spellcheck: "false", "aria-label": "SKU" }),
    h("input", { class: "line-qty", type: "number", min: 1, step: 1, value: qty, "aria-label": "Quantity" }),
    h("button", { type: "button", class: "icon", title: "Remove line", "aria-label": "Remove line", onclick: () => removeLine(row) }, "×"),
  );
  $("#lines").append(row);
  return row;
}

function removeLine(row) {
  if (document.querySelectorAll("#lines .line").length > 1) row.remove();
}

function setMode(mode) {
  for (const radio of document.querySelectorAll("input[name=mode]")) radio.checked = radio.value === mode;
  $("#ship-fields").hidden = mode !== "ship";
  $("#pickup-fields").hidden = mode !== "pickup";
  map.setPickup(mode === "pickup" ? $("#pickup-node").value || null : null);
}

function mode() {
  return document.querySelector("input[name=mode]:checked").value;
}

/** The request fields shared by quotes and orders, or throws an error naming the bad field. */
function routeRequest() {
  const lines = [];
  document.querySelectorAll("#lines .line").forEach((row, i) => {
    const sku = row.querySelector(".line-sku").value.trim();
    const qty = Number(row.querySelector(".line-qty").value);
    if (!sku && i > 0) return; // an extra line left empty
    if (!ID_PATTERN.test(sku)) throw new ApiError(0, { title: "Invalid input", detail: "each line needs a SKU (letters, digits, . _ : -)", field: `lines[${i}].sku` });
    if (!Number.isInteger(qty) || qty < 1) throw new ApiError(0, { title: "Invalid input", detail: "a quantity is a whole number of at least 1", field: `lines[${i}].qty` });
    lines.push({ sku, qty });
  });
  if (mode() === "pickup") {
    const pickup = $("#pickup-node").value;
    if (!pickup) throw new ApiError(0, { title: "Invalid input", detail: "choose a store for pickup", field: "pickup_node_id" });
    return { lines, pickup_node_id: pickup };
  }
  const lat = $("#dest-lat").value;
  const lon = $("#dest-lon").value;
  if (lat === "" || lon === "") throw new ApiError(0, { title: "Invalid input", detail: "enter a latitude and longitude, or click the map", field: "destination" });
  return { lines, destination: { lat: Number(lat), lon: Number(lon) } };
}

function busy(on) {
  $("#route-busy").hidden = !on;
  $("#quote").disabled = on;
  $("#place-order").disabled = on;
}

async function quote() {
  let request;
  try {
    request = routeRequest();
  } catch (err) {
    showProblem($("#route-error"), err);
    return;
  }
  showProblem($("#route-error"), null);
  busy(true);
  const settled = await Promise.allSettled(
    STRATEGIES.map(([strategy]) => api("POST", "/v1/routing/quote", { body: { ...request, strategy } })),
  );
  busy(false);
  state.quotes = new Map(STRATEGIES.map(([strategy], i) => [strategy, settled[i]]));
  const failed = settled.find((s) => s.status === "rejected");
  if (failed && settled.every((s) => s.status === "rejected")) {
    showProblem($("#route-error"), failed.reason);
    $("#quote-results").hidden = true;
    map.setPlan(null);
    return;
  }
  showPlan(CHOSEN);
}

function showPlan(strategy) {
  state.shownStrategy = strategy;
  const tbody = $("#quote-results tbody");
  tbody.replaceChildren(
    ...STRATEGIES.map(([name, label]) => {
      const result = state.quotes.get(name);
      const classes = [name === CHOSEN ? "chosen" : "", name === strategy ? "shown" : ""].join(" ").trim();
      if (!result || result.status === "rejected") {
        const problem = result ? result.reason.problem || {} : {};
        return h(
          "tr",
          { dataset: { strategy: name }, class: classes },
          h("td", {}, label),
          h("td", { colspan: 4, class: "muted" }, problem.title || "failed"),
        );
      }
      const plan = result.value;
      const short = plan.unfulfilled.reduce((sum, u) => sum + u.qty, 0);
      return h(
        "tr",
        { dataset: { strategy: name }, class: classes, tabindex: 0, onclick: () => showPlan(name) },
        h("td", {}, label, name === CHOSEN ? h("span", { class: "tag" }, "chosen") : null),
        h("td", { class: "num" }, plan.shipments.length),
        h("td", { class: "num total-cost" }, money(plan.total_cost), short ? h("span", { class: "tag warn", title: "units that could not be placed" }, `${short} short`) : null),
        h("td", { class: "ships-from", title: plan.shipments.map((s) => nodeName(s.node_id)).join(", ") }, plan.shipments.map((s) => nodeName(s.node_id)).join(", ") || "–"),
        h("td", { class: "num muted" }, `${Number(plan.solver.elapsed_ms).toFixed(1)} ms`),
      );
    }),
  );
  $("#quote-results").hidden = false;
  const result = state.quotes.get(strategy);
  map.setPlan(result && result.status === "fulfilled" ? result.value : null);
}

function orderId() {
  const stamp = new Date().toISOString().replace(/[-:]/g, "").slice(0, 15);
  return `ui-${stamp}-${uuid().slice(0, 8)}`;
}

async function placeOrder() {
  let request;
  try {
    request = routeRequest();
  } catch (err) {
    showProblem($("#route-error"), err);
    return;
  }
  showProblem($("#route-error"), null);
  busy(true);
  try {
    const order = await api("POST", "/v1/orders", {
      body: { order_id: orderId(), ...request, strategy: state.shownStrategy },
      idempotent: true,
    });
    renderOrder(order);
    map.setPlan(order.plan);
    refreshLists();
  } catch (err) {
    showProblem($("#route-error"), err);
  } finally {
    busy(false);
  }
}

function renderOrder(order) {
  const box = $("#order-result");
  const plan = order.plan;
  box.replaceChildren(
    h(
      "div",
      { class: "order-head" },
      h("span", { class: "badge ok" }, "Reserved"),
      h("strong", {}, `Order ${order.order_id}`),
      h("span", { class: "muted" }, `expires ${new Date(order.expires_at).toLocaleTimeString("en-GB")}`),
    ),
    h(
      "dl",
      { class: "order-facts" },
      h("dt", {}, "Reservation"),
      h("dd", {}, h("code", { class: "reservation-id", dataset: { reservationId: order.reservation_id } }, order.reservation_id)),
      h("dt", {}, "Total cost"),
      h("dd", { class: "order-cost" }, money(plan.total_cost)),
      h("dt", {}, "Strategy"),
      h("dd", {}, plan.strategy),
    ),
    h(
      "table",
      { class: "data order-shipments" },
      h("thead", {}, h("tr", {}, h("th", {}, "Ships from"), h("th", {}, "Lines"), h("th", { class: "num" }, "Distance"), h("th", { class: "num" }, "Cost"))),
      h(
        "tbody",
        {},
        plan.shipments.map((s) =>
          h(
            "tr",
            { dataset: { nodeId: s.node_id } },
            h("td", {}, h("span", { class: "node-name" }, nodeName(s.node_id))),
            h("td", {}, lineChips(s.lines, (l) => `${l.qty} × ${l.sku}`)),
            h("td", { class: "num muted" }, `${Number(s.distance_km).toFixed(0)} km`),
            h("td", { class: "num cost" }, money(s.cost)),
          ),
        ),
      ),
    ),
  );
  box.hidden = false;
}

// -- lists -------------------------------------------------------------------------------------------

function startLists() {
  clearInterval(state.listsTimer);
  if (document.body.dataset.role === "storefront") {
    showProblem($("#lists-error"), new ApiError(403, { title: "Lists need an oms or admin key", detail: "this key may read stock and quote only" }));
    return;
  }
  refreshLists();
  state.listsTimer = setInterval(() => {
    if (document.visibilityState === "visible") refreshLists();
  }, LIST_REFRESH_MS);
}

function startClock() {
  clearInterval(state.clockTimer);
  state.clockTimer = setInterval(() => {
    for (const cell of document.querySelectorAll("[data-expires]")) cell.textContent = until(cell.dataset.expires);
  }, 1000);
}

async function refreshLists() {
  const [reservations, holds, transfers] = await Promise.allSettled([
    api("GET", "/v1/reservations?limit=50"),
    api("GET", "/v1/holds?limit=50"),
    api("GET", "/v1/transfers?limit=50"),
  ]);
  const failed = [reservations, holds, transfers].find((r) => r.status === "rejected");
  showProblem($("#lists-error"), failed ? failed.reason : null);
  if (reservations.status === "fulfilled") renderReservations(reservations.value);
  if (holds.status === "fulfilled") renderHolds(holds.value);
  if (transfers.status === "fulfilled") renderTransfers(transfers.value);
  $("#lists-updated").textContent = `Updated ${new Date().toLocaleTimeString("en-GB")}`;
}

function setCount(name, page) {
  $(`#count-${name}`).textContent = page.next_after ? `${page.items.length}+` : String(page.items.length);
}

function emptyRow(columns, text) {
  return h("tr", { class: "empty" }, h("td", { colspan: columns }, text));
}

function renderReservations(page) {
  setCount("reservations", page);
  const tbody = $("#reservations-table tbody");
  if (!page.items.length) {
    tbody.replaceChildren(emptyRow(6, "No open reservations."));
    return;
  }
  tbody.replaceChildren(
    ...page.items.map((r) =>
      h(
        "tr",
        { dataset: { reservationId: r.reservation_id } },
        h("td", {}, h("code", { title: r.reservation_id }, shortId(r.reservation_id))),
        h("td", {}, r.order_ref || h("span", { class: "muted" }, "–")),
        h("td", {}, lineChips(r.lines, (l) => `${l.qty} × ${l.sku} · ${nodeName(l.node_id)}`)),
        h("td", { class: "muted" }, ago(r.created_at)),
        h("td", { class: "mono", dataset: { expires: r.expires_at } }, until(r.expires_at)),
        h(
          "td",
          { class: "row-actions" },
          h("button", { type: "button", class: "small secondary", onclick: (e) => finish(e, r.reservation_id, "commit") }, "Commit"),
          h("button", { type: "button", class: "small ghost", onclick: (e) => finish(e, r.reservation_id, "release") }, "Release"),
        ),
      ),
    ),
  );
}

async function finish(event, reservationId, action) {
  event.currentTarget.disabled = true;
  try {
    await api("POST", `/v1/reservations/${encodeURIComponent(reservationId)}/${action}`, { idempotent: true });
    showProblem($("#lists-error"), null);
  } catch (err) {
    showProblem($("#lists-error"), err);
  }
  refreshLists();
}

function statusBadge(status) {
  return h("span", { class: `badge status-${status}` }, status.replace("_", " "));
}

function renderHolds(page) {
  setCount("holds", page);
  const tbody = $("#holds-table tbody");
  if (!page.items.length) {
    tbody.replaceChildren(emptyRow(6, "No open holds."));
    return;
  }
  tbody.replaceChildren(
    ...page.items.map((x) =>
      h(
        "tr",
        { dataset: { holdId: x.hold_id } },
        h("td", {}, h("code", { title: x.hold_id }, shortId(x.hold_id))),
        h("td", {}, nodeName(x.store_id)),
        h("td", {}, statusBadge(x.status)),
        h("td", {}, lineChips(x.lines, (l) => `${l.qty} × ${l.sku}`)),
        h("td", {}, x.customer_ref),
        h("td", { class: "mono", dataset: { expires: x.expires_at } }, until(x.expires_at)),
      ),
    ),
  );
}

function renderTransfers(page) {
  setCount("transfers", page);
  const tbody = $("#transfers-table tbody");
  if (!page.items.length) {
    tbody.replaceChildren(emptyRow(5, "No open transfers."));
    return;
  }
  tbody.replaceChildren(
    ...page.items.map((t) =>
      h(
        "tr",
        { dataset: { transferId: t.transfer_id } },
        h("td", {}, h("code", { title: t.transfer_id }, shortId(t.transfer_id))),
        h("td", {}, `${nodeName(t.from_node)} → ${nodeName(t.to_node)}`),
        h("td", {}, statusBadge(t.status)),
        h("td", {}, lineChips(t.lines, (l) => `${l.qty} × ${l.sku}${l.shipped ? ` (${l.shipped} shipped)` : ""}`)),
        h("td", { class: "muted" }, ago(t.created_at)),
      ),
    ),
  );
}

function selectTab(name) {
  state.activeTab = name;
  for (const tab of document.querySelectorAll(".tab")) tab.setAttribute("aria-selected", String(tab.dataset.tab === name));
  for (const table of document.querySelectorAll("table.list")) table.hidden = table.dataset.panel !== name;
}

// -- start -------------------------------------------------------------------------------------------

function init() {
  map = new NetworkMap($("#map"), $("#map-tooltip"), { onPick: pickDestination });
  const wrap = $(".map-wrap");
  new ResizeObserver(() => map.resize(wrap.clientWidth, wrap.clientHeight)).observe(wrap);
  $("#login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("#api-key").value.trim();
    if (!key) return;
    storeKey(key);
    connect();
  });
  $("#sign-out").addEventListener("click", signOut);
  $("#sku-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const sku = $("#sku").value.trim();
    if (ID_PATTERN.test(sku)) selectSku(sku);
  });
  $("#add-line").addEventListener("click", () => addLine().querySelector(".line-sku").focus());
  for (const radio of document.querySelectorAll("input[name=mode]")) radio.addEventListener("change", () => setMode(radio.value));
  $("#pickup-node").addEventListener("change", () => setMode("pickup"));
  for (const id of ["#dest-lat", "#dest-lon"]) {
    $(id).addEventListener("change", () => {
      const lat = Number($("#dest-lat").value);
      const lon = Number($("#dest-lon").value);
      if ($("#dest-lat").value !== "" && $("#dest-lon").value !== "" && Math.abs(lat) <= 90 && Math.abs(lon) <= 180) {
        map.setDestination({ lat, lon });
      }
    });
  }
  $("#route-form").addEventListener("submit", (event) => {
    event.preventDefault();
    quote();
  });
  $("#place-order").addEventListener("click", placeOrder);
  for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => selectTab(tab.dataset.tab));
  addLine();
  if (storedKey()) connect();
  else showLogin(null);
}

init();
