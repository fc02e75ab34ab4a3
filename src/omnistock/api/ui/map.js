// The network map: nodes drawn as SVG from their coordinates in a Web-Mercator projection fitted
// to their bounding box, with a light graticule, no tiles. Shows per node the availability of
// the chosen SKU, and a routing plan as lines from the shipping nodes to the destination.

const SVG = "http://www.w3.org/2000/svg";
const PAD = 56;
const MIN_SPAN_DEG = 0.4;
const STEPS = [0.05, 0.1, 0.2, 0.25, 0.5, 1, 2, 5, 10, 15, 30, 45];

export const KIND_LABELS = {
  warehouse: "Warehouse",
  store: "Store",
  dark_store: "Dark store",
  dropship: "Drop-ship",
};

function el(name, attrs = {}, parent = null) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (parent) parent.appendChild(node);
  return node;
}

const rad = (d) => (d * Math.PI) / 180;
const deg = (r) => (r * 180) / Math.PI;
const mercY = (lat) => Math.log(Math.tan(Math.PI / 4 + rad(Math.max(-85, Math.min(85, lat))) / 2));
const latOf = (y) => deg(2 * Math.atan(Math.exp(y)) - Math.PI / 2);

function formatDeg(value, pos, neg) {
  const v = Math.abs(value);
  const text = Number.isInteger(v) ? String(v) : v.toFixed(v * 10 === Math.round(v * 10) ? 1 : 2);
  return `${text}°${value >= 0 ? pos : neg}`;
}

export class NetworkMap {
  constructor(svg, tooltip, { onPick } = {}) {
    this.svg = svg;
    this.tooltip = tooltip;
    this.onPick = onPick;
    this.nodes = [];
    this.availability = new Map();
    this.plan = null;
    this.destination = null;
    this.pickupId = null;
    this.width = 960;
    this.height = 600;
    svg.setAttribute("viewBox", `0 0 ${this.width} ${this.height}`);
    svg.setAttribute("preserveAspectRatio", "xMidYMid meet");
    this.layers = {};
    for (const name of ["ocean", "graticule", "bubbles", "plan", "nodes", "labels", "overlay"]) {
      this.layers[name] = el("g", { class: `layer-${name}` }, svg);
    }
    this.background = el("rect", { x: 0, y: 0, width: this.width, height: this.height, class: "map-bg" }, this.layers.ocean);
    svg.addEventListener("click", (event) => this.click(event));
    this.fit([]);
  }

  /** Draws at the size the map is shown at (one unit a CSS pixel, so text keeps its size). */
  resize(width, height) {
    width = Math.round(width);
    height = Math.round(height);
    if (width < 50 || height < 50 || (width === this.width && height === this.height)) return;
    this.width = width;
    this.height = height;
    this.svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    this.background.setAttribute("width", width);
    this.background.setAttribute("height", height);
    this.fit(this.fitPoints());
    this.render();
  }

  // -- projection ------------------------------------------------------------------------------

  fit(points) {
    let lons = points.map((p) => p.lon);
    let lats = points.map((p) => p.lat);
    if (lons.length === 0) {
      lons = [-10, 30];
      lats = [35, 60];
    }
    let [west, east] = [Math.min(...lons), Math.max(...lons)];
    let [south, north] = [Math.min(...lats), Math.max(...lats)];
    if (east - west < MIN_SPAN_DEG) {
      const mid = (east + west) / 2;
      [west, east] = [mid - MIN_SPAN_DEG / 2, mid + MIN_SPAN_DEG / 2];
    }
    if (north - south < MIN_SPAN_DEG) {
      const mid = (north + south) / 2;
      [south, north] = [mid - MIN_SPAN_DEG / 2, mid + MIN_SPAN_DEG / 2];
    }
    const x0 = rad(west);
    const x1 = rad(east);
    const y0 = mercY(south);
    const y1 = mercY(north);
    const scale = Math.min((this.width - 2 * PAD) / (x1 - x0), (this.height - 2 * PAD) / (y1 - y0));
    this.scale = scale;
    this.cx = (x0 + x1) / 2;
    this.cy = (y0 + y1) / 2;
  }

  project(lat, lon) {
    return [this.width / 2 + (rad(lon) - this.cx) * this.scale, this.height / 2 - (mercY(lat) - this.cy) * this.scale];
  }

  unproject(x, y) {
    const lon = deg((x - this.width / 2) / this.scale + this.cx);
    const lat = latOf(-(y - this.height / 2) / this.scale + this.cy);
    return { lat, lon };
  }

  visible(lat, lon) {
    const [x, y] = this.project(lat, lon);
    return x >= 12 && x <= this.width - 12 && y >= 12 && y <= this.height - 12;
  }

  // -- data ------------------------------------------------------------------------------------

  setNodes(nodes) {
    this.nodes = nodes;
    this.fit(this.fitPoints());
    this.render();
  }

  fitPoints() {
    const points = this.nodes.map((n) => ({ lat: n.lat, lon: n.lon }));
    if (this.destination) points.push(this.destination);
    return points;
  }

  setAvailability(body) {
    this.availability = new Map();
    if (body) for (const n of body.nodes) this.availability.set(n.node_id, n.available);
    this.hasAvailability = Boolean(body);
    this.renderBubbles();
    this.renderNodes();
  }

  setDestination(point) {
    this.destination = point;
    if (point && !this.visible(point.lat, point.lon)) {
      this.fit(this.fitPoints());
      this.render();
    } else {
      this.renderPlan();
    }
  }

  setPickup(nodeId) {
    this.pickupId = nodeId;
    this.renderNodes();
    this.renderPlan();
  }

  setPlan(plan) {
    this.plan = plan;
    this.renderPlan();
  }

  // -- drawing ---------------------------------------------------------------------------------

  render() {
    this.renderGraticule();
    this.renderBubbles();
    this.renderPlan();
    this.renderNodes();
  }

  renderGraticule() {
    const g = this.layers.graticule;
    g.replaceChildren();
    const nw = this.unproject(0, 0);
    const se = this.unproject(this.width, this.height);
    const spanLon = se.lon - nw.lon;
    const spanLat = nw.lat - se.lat;
    const step = STEPS.find((s) => Math.max(spanLon, spanLat) / s <= 9) || 90;
    for (let lon = Math.ceil(nw.lon / step) * step; lon <= se.lon; lon += step) {
      const [x] = this.project(0, lon);
      el("line", { x1: x, y1: 0, x2: x, y2: this.height, class: "graticule" }, g);
      if (x < 24 || x > this.width - 48) continue;
      const label = el("text", { x: x + 4, y: this.height - 8, class: "graticule-label" }, g);
      label.textContent = formatDeg(Number(lon.toFixed(4)), "E", "W");
    }
    for (let lat = Math.ceil(se.lat / step) * step; lat <= nw.lat; lat += step) {
      const [, y] = this.project(lat, 0);
      el("line", { x1: 0, y1: y, x2: this.width, y2: y, class: "graticule" }, g);
      if (y < 24 || y > this.height - 24) continue;
      const label = el("text", { x: 8, y: y - 4, class: "graticule-label" }, g);
      label.textContent = formatDeg(Number(lat.toFixed(4)), "N", "S");
    }
  }

  renderNodes() {
    const g = this.layers.nodes;
    const labels = this.layers.labels;
    g.replaceChildren();
    labels.replaceChildren();
    for (const node of this.nodes) {
      const [x, y] = this.project(node.lat, node.lon);
      const group = el(
        "g",
        {
          class: `node kind-${node.kind}${node.node_id === this.pickupId ? " is-pickup" : ""}`,
          transform: `translate(${x.toFixed(1)} ${y.toFixed(1)})`,
          "data-node-id": node.node_id,
          tabindex: 0,
        },
        g,
      );
      el("title", {}, group).textContent = `${node.name} (${node.node_id})`;
      glyph(node.kind, group);
      group.addEventListener("mouseenter", () => this.showTip(node, x, y));
      group.addEventListener("mouseleave", () => this.hideTip());
      group.addEventListener("focus", () => this.showTip(node, x, y));
      group.addEventListener("blur", () => this.hideTip());
      const value = this.availability.get(node.node_id);
      if (this.hasAvailability && value !== undefined) {
        const text = String(value);
        const label = el("g", { class: `figure${value ? "" : " is-zero"}`, "data-node-id": node.node_id }, labels);
        const width = 10 + 7.2 * text.length;
        el("rect", { x: x + 10, y: y - 24, width, height: 18, rx: 9 }, label);
        el("text", { x: x + 10 + width / 2, y: y - 11.5, "text-anchor": "middle" }, label).textContent = text;
      }
    }
  }

  renderBubbles() {
    const g = this.layers.bubbles;
    g.replaceChildren();
    if (!this.hasAvailability) return;
    const values = [...this.availability.values()];
    const max = Math.max(1, ...values);
    for (const node of this.nodes) {
      const value = this.availability.get(node.node_id) || 0;
      if (value <= 0) continue;
      const [x, y] = this.project(node.lat, node.lon);
      const r = 10 + 26 * Math.sqrt(value / max);
      el("circle", { cx: x, cy: y, r: r.toFixed(1), class: "bubble", "data-node-id": node.node_id }, g);
    }
  }

  renderPlan() {
    const g = this.layers.plan;
    g.replaceChildren();
    const byId = new Map(this.nodes.map((n) => [n.node_id, n]));
    const pickup = this.pickupId ? byId.get(this.pickupId) : null;
    const target = pickup ? { lat: pickup.lat, lon: pickup.lon } : this.destination;
    if (!target) return;
    const [tx, ty] = this.project(target.lat, target.lon);
    const shipments = this.plan ? this.plan.shipments : [];
    shipments.forEach((shipment, i) => {
      const from = byId.get(shipment.node_id);
      if (!from) return;
      const [fx, fy] = this.project(from.lat, from.lon);
      const group = el("g", { class: "shipment", "data-shipment-node": shipment.node_id }, g);
      const dist = Math.hypot(tx - fx, ty - fy);
      const cost = Number(shipment.cost).toFixed(2);
      let lx = fx;
      let ly = fy + 30;
      if (dist < 4) {
        // Shipped from where it is going (a pickup from the store's own stock).
        el("circle", { cx: fx, cy: fy, r: 16, class: "shipment-local" }, group);
      } else {
        const bend = (i % 2 === 0 ? 1 : -1) * Math.min(80, dist * 0.18);
        const mx = (fx + tx) / 2 + (-(ty - fy) / dist) * bend;
        const my = (fy + ty) / 2 + ((tx - fx) / dist) * bend;
        el("path", { d: `M${fx},${fy} Q${mx},${my} ${tx},${ty}`, class: "shipment-line" }, group);
        el("circle", { cx: fx, cy: fy, r: 11, class: "shipment-origin" }, group);
        // The curve's midpoint; on a short line, set off to the side so the ends stay visible.
        const side = dist < 90 ? 26 * Math.sign(bend) : 0;
        lx = 0.25 * fx + 0.5 * mx + 0.25 * tx + (-(ty - fy) / dist) * side;
        ly = 0.25 * fy + 0.5 * my + 0.25 * ty + ((tx - fx) / dist) * side;
      }
      const label = el("g", { class: "plan-cost", "data-shipment-node": shipment.node_id }, group);
      const text = `${cost}`;
      const width = 14 + 7.4 * text.length;
      el("rect", { x: lx - width / 2, y: ly - 11, width, height: 22, rx: 11 }, label);
      el("text", { x: lx, y: ly + 4.5, "text-anchor": "middle" }, label).textContent = text;
    });
    if (!pickup) {
      const pin = el("g", { class: "destination", transform: `translate(${tx} ${ty})` }, g);
      el("circle", { r: 13, class: "destination-halo" }, pin);
      el("circle", { r: 6, class: "destination-dot" }, pin);
      el("title", {}, pin).textContent = `Destination ${target.lat.toFixed(4)}, ${target.lon.toFixed(4)}`;
    }
  }

  // -- interaction -----------------------------------------------------------------------------

  click(event) {
    if (!this.onPick) return;
    const matrix = this.svg.getScreenCTM();
    if (!matrix) return;
    const point = new DOMPoint(event.clientX, event.clientY).matrixTransform(matrix.inverse());
    const picked = this.unproject(point.x, point.y);
    this.onPick({ lat: Number(picked.lat.toFixed(5)), lon: Number(picked.lon.toFixed(5)) });
  }

  showTip(node, x, y) {
    const tip = this.tooltip;
    const value = this.availability.get(node.node_id);
    tip.replaceChildren();
    const title = document.createElement("strong");
    title.textContent = node.name;
    const meta = document.createElement("span");
    meta.textContent = `${KIND_LABELS[node.kind] || node.kind} · ${node.node_id}`;
    tip.append(title, meta);
    if (this.hasAvailability) {
      const stock = document.createElement("span");
      stock.textContent = value === undefined ? "no stock of this SKU" : `${value} available`;
      tip.append(stock);
    }
    const box = this.svg.getBoundingClientRect();
    const parent = tip.offsetParent ? tip.offsetParent.getBoundingClientRect() : box;
    const k = Math.min(box.width / this.width, box.height / this.height);
    const ox = (box.width - this.width * k) / 2;
    const oy = (box.height - this.height * k) / 2;
    tip.style.left = `${box.left - parent.left + ox + x * k + 14}px`;
    tip.style.top = `${box.top - parent.top + oy + y * k + 14}px`;
    tip.hidden = false;
  }

  hideTip() {
    this.tooltip.hidden = true;
  }
}

function glyph(kind, group) {
  if (kind === "warehouse") {
    el("rect", { x: -7, y: -7, width: 14, height: 14, rx: 2.5, class: "glyph" }, group);
  } else if (kind === "dark_store") {
    el("path", { d: "M0,-9 L9,0 L0,9 L-9,0 Z", class: "glyph" }, group);
  } else if (kind === "dropship") {
    el("path", { d: "M0,-9 L8.5,6 L-8.5,6 Z", class: "glyph" }, group);
  } else {
    el("circle", { r: 7, class: "glyph" }, group);
  }
}

/** A legend swatch as a small standalone SVG. */
export function legendGlyph(kind) {
  const svg = el("svg", { viewBox: "-10 -10 20 20", width: 14, height: 14, class: `legend-glyph node kind-${kind}` });
  glyph(kind, svg);
  return svg;
}
