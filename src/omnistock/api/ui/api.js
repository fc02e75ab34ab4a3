// The dashboard's link to the omnistock API: the key kept for this tab, JSON calls with the key
// in the Authorization header (never in a URL), problem+json errors, and the live availability
// stream read with fetch() (EventSource cannot send an Authorization header).

const KEY_ITEM = "omnistock.apiKey";

export function storedKey() {
  return sessionStorage.getItem(KEY_ITEM);
}

export function storeKey(key) {
  sessionStorage.setItem(KEY_ITEM, key);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY_ITEM);
}

/** A random UUID; crypto.randomUUID needs a secure context, getRandomValues does not. */
export function uuid() {
  if (globalThis.crypto && typeof crypto.randomUUID === "function") {
    try {
      return crypto.randomUUID();
    } catch {
      // not a secure context: fall through
    }
  }
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** An API error: the problem+json body when there is one (title, detail, field, shortages). */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

/**
 * Calls the API with the stored key. ``idempotent`` adds a fresh Idempotency-Key (the API wants
 * one on every POST that creates or moves stock). Resolves to the decoded body; rejects with an
 * ApiError.
 */
export async function api(method, path, { body, idempotent = false, signal } = {}) {
  const headers = { Accept: "application/json" };
  const key = storedKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  if (idempotent) headers["Idempotency-Key"] = uuid();
  const init = { method, headers, signal, cache: "no-store", credentials: "omit" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, { title: "Service unreachable", detail: String(err.message || err) });
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = { title: `HTTP ${response.status}`, detail: text.slice(0, 300) };
    }
  }
  if (!response.ok) {
    throw new ApiError(response.status, data || { title: `HTTP ${response.status}`, detail: "" });
  }
  return data;
}

/**
 * A text/event-stream parser (the WHATWG rules): feed it text as it arrives, get back the events
 * completed so far as {event, data, id}. Comments (": keep-alive") are dropped.
 */
export class EventStreamParser {
  constructor() {
    this.buffer = "";
    this.reset();
  }

  reset() {
    this.eventType = "";
    this.data = [];
    this.lastId = "";
  }

  push(text) {
    this.buffer += text;
    const events = [];
    let match;
    const lineEnd = /\r\n|\n|\r/g;
    let start = 0;
    while ((match = lineEnd.exec(this.buffer)) !== null) {
      // A lone \r at the very end may be the first half of \r\n: wait for more.
      if (match[0] === "\r" && match.index === this.buffer.length - 1) break;
      const line = this.buffer.slice(start, match.index);
      start = match.index + match[0].length;
      const event = this.line(line);
      if (event) events.push(event);
    }
    this.buffer = this.buffer.slice(start);
    return events;
  }

  line(line) {
    if (line === "") {
      if (this.data.length === 0) {
        this.eventType = "";
        return null;
      }
      const event = { event: this.eventType || "message", data: this.data.join("\n"), id: this.lastId };
      this.eventType = "";
      this.data = [];
      return event;
    }
    if (line.startsWith(":")) return null;
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.eventType = value;
    else if (field === "data") this.data.push(value);
    else if (field === "id") this.lastId = value;
    return null;
  }
}

/**
 * Follows GET /v1/availability/stream?skus=... and calls ``onAvailability(body)`` for every
 * availability event; reconnects after an error with a growing pause. ``onState(state, detail)``
 * hears "connecting", "live", "reconnecting", "unsupported" (the service has no stream: the
 * caller falls back to polling) and "refused" (the key may not read availability).
 * Returns a function that stops it.
 */
export function followAvailability(skus, { onAvailability, onState }) {
  const controller = new AbortController();
  let pause = 1000;
  let stopped = false;

  async function once() {
    onState("connecting");
    const response = await fetch(`/v1/availability/stream?skus=${encodeURIComponent(skus.join(","))}`, {
      headers: { Accept: "text/event-stream", Authorization: `Bearer ${storedKey()}` },
      cache: "no-store",
      credentials: "omit",
      signal: controller.signal,
    });
    const type = response.headers.get("content-type") || "";
    if (response.status === 401 || response.status === 403) {
      const problem = await response.json().catch(() => ({}));
      onState("refused", problem.detail || `HTTP ${response.status}`);
      return "final";
    }
    if (!response.ok || !type.startsWith("text/event-stream")) {
      await response.body?.cancel();
      // 404/405, or the per-SKU route answering for a SKU called "stream": no stream here.
      if (response.status < 500 && response.status !== 408 && response.status !== 429) {
        onState("unsupported", `HTTP ${response.status}`);
        return "final";
      }
      throw new Error(`HTTP ${response.status}`);
    }
    onState("live");
    pause = 1000;
    const parser = new EventStreamParser();
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return "ended";
      for (const event of parser.push(value)) {
        if (event.event !== "availability") continue;
        try {
          onAvailability(JSON.parse(event.data));
        } catch (err) {
          console.error("availability event", err);
        }
      }
    }
  }

  (async () => {
    while (!stopped) {
      try {
        if ((await once()) === "final") return;
      } catch (err) {
        if (stopped || err.name === "AbortError") return;
      }
      if (stopped) return;
      onState("reconnecting");
      await new Promise((resolve) => setTimeout(resolve, pause));
      pause = Math.min(pause * 2, 15000);
    }
  })();

  return () => {
    stopped = true;
    controller.abort();
  };
}
