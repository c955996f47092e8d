// canal.js: the browser client of Canal. One ES module, no build step, no dependency.
//
//   import {connect} from "/canal.js";
//   const canal = connect("/ws/feed/", {getTicket: async () => (await fetch(...)).json().ticket});
//   canal.addEventListener("message", (e) => render(e.detail));
//   canal.send({text: "hi"});
//
// It reconnects with exponential backoff and full jitter, presents a fresh credential on
// every attempt, recovers what it missed (consumer.Options.Recover), queues sends while
// offline, answers the server's re-authorization requests, and falls back to
// Server-Sent Events (plus HTTP POST for sends) when WebSockets are blocked.

/**
 * @typedef {[number, string]} Position  [offset, epoch] of the last message of a group.
 */

/**
 * @typedef {object} Options
 * @property {() => (string|null|Promise<string|null>)} [getTicket] Called before every
 *   attempt; a credential (a single-use ticket) for that attempt, or null for none. It
 *   travels as the WebSocket subprotocol `ticketProtocol + "." + ticket` (base64url
 *   form for other characters) and as the query parameter `ticketParam` on an event
 *   stream. An exception (or rejection) counts as a failed attempt.
 * @property {string} [ticketProtocol="canal.ticket"] The marker subprotocol
 *   (middleware.Ticket's; "canal.token" for middleware.Token).
 * @property {string} [ticketParam="ticket"] The query parameter on event streams.
 * @property {string[]} [protocols] Application subprotocols offered too.
 * @property {Object<string, Position>} [positions] Positions to recover from at the
 *   first connection (e.g. rendered by the page); later ones are kept by the client.
 * @property {"auto"|"websocket"|"sse"} [transport="auto"] "auto" uses WebSockets and
 *   falls back to an event stream after `fallbackAfter` attempts that never opened.
 * @property {number} [fallbackAfter=2]
 * @property {string} [postURL] Where sends go (HTTP POST, JSON) on an event stream;
 *   without it they stay queued until a WebSocket opens.
 * @property {() => Object<string, string>} [postHeaders] Extra headers of each POST
 *   (Django's X-CSRFToken, say).
 * @property {number} [minDelay=500] First backoff step in ms.
 * @property {number} [maxDelay=30000] Backoff ceiling in ms.
 * @property {number} [spread=5000] The window (ms) of the first retry after an open
 *   connection drops: when a deploy drops thousands of clients at once, they come back
 *   spread over it instead of all hitting the ticket view within minDelay (see
 *   bench/cmd/storm). Later retries follow the backoff.
 * @property {number} [openTimeout=10000] An attempt that has not opened by then fails.
 * @property {number} [maxQueue=1000] Sends kept while offline; past it send() returns false.
 * @property {number[]} [stopCodes=[1008, 4403]] Close codes after which the client
 *   does not reconnect (4403: consumer.DisconnectUser; 1008: policy violation).
 */

/**
 * Events (CustomEvent, the payload in `detail`):
 *   "state"    {state, attempt, code, reason}: "connecting", "open", "waiting" (backoff), "closed" (final)
 *   "message"  the frame: parsed JSON with the "canal" position key removed, or a string / ArrayBuffer
 *   "recover"  {group, recovered, offset, epoch}: recovered false means the page must reload its state
 *   "presence" {type: "presence.join"|"presence.leave", group, id, username} (frames of those types)
 *   "refresh"  a frame of type "canal.refresh" the application relays (e.g. new permissions)
 *   "reauth"   {within}: the server asked for a fresh credential (answered with getTicket)
 *   "drop"     {data}: a queued send the HTTP POST refused
 * @typedef {"connecting"|"open"|"waiting"|"closed"} State
 */

const RECOVER = "canal.recover";
const POSITION = "canal.position";
const REAUTH = "canal.reauth";

/**
 * Opens a Canal connection that keeps itself open.
 * @param {string} url  ws(s):// or http(s):// URL, or a path on this page's origin.
 * @param {Options} [options]
 * @returns {Canal}
 */
export function connect(url, options = {}) {
  return new Canal(url, options);
}

/** A connection that reconnects by itself. */
export class Canal extends EventTarget {
  /** @param {string} url @param {Options} [options] */
  constructor(url, options = {}) {
    super();
    /** @type {Required<Omit<Options, "getTicket"|"postURL"|"positions">> & Options} */
    this.options = {
      ticketProtocol: "canal.ticket", ticketParam: "ticket", protocols: [], transport: "auto",
      fallbackAfter: 2, minDelay: 500, maxDelay: 30000, spread: 5000, openTimeout: 10000, maxQueue: 1000,
      stopCodes: [1008, 4403], ...options,
    };
    this.url = new URL(url, globalThis.location?.href);
    /** @type {Object<string, Position>} the last position of each recovered group */
    this.positions = { ...(options.positions || {}) };
    /** @type {State} */
    this.state = "connecting";
    /** @type {"websocket"|"sse"} */
    this.transport = this.options.transport === "sse" ? "sse" : "websocket";
    this.attempt = 0; // failed attempts since the last open
    this.neverOpened = 0; // attempts in a row that never opened, for the fallback
    this.wsWorked = false; // a WebSocket opened once on this page
    /** @type {unknown[]} */
    this.queue = [];
    /** @type {WebSocket|EventSource|null} */
    this.sock = null;
    this.timer = 0;
    this.stopped = false;
    this.posting = false;
    // After the caller's synchronous code, so that listeners added right after
    // connect() hear the first "connecting".
    queueMicrotask(() => this.open());
  }

  /**
   * Sends data (an object or array as JSON, a string or binary as is) now, or when the
   * connection is back. Returns false when the offline queue is full.
   * @param {unknown} data
   */
  send(data) {
    if (this.state === "open" && this.queue.length === 0 && this.write(data)) return true;
    if (this.queue.length >= this.options.maxQueue || this.stopped) return false;
    this.queue.push(data);
    this.flush();
    return true;
  }

  /** Closes for good (no reconnect). */
  close(code = 1000, reason = "") {
    this.stopped = true;
    clearTimeout(this.timer);
    this.drop(code, reason);
    this.setState("closed", { code, reason });
  }

  /** @private @param {string} type @param {unknown} detail */
  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  /** @private @param {State} state @param {object} [extra] */
  setState(state, extra = {}) {
    this.state = state;
    this.emit("state", { state, attempt: this.attempt, transport: this.transport, ...extra });
  }

  /** @private the URL of the next attempt, with the positions to recover from */
  target(ticket) {
    const u = new URL(this.url);
    const ws = this.transport === "websocket";
    const secure = u.protocol === "https:" || u.protocol === "wss:";
    u.protocol = (ws ? "ws" : "http") + (secure ? "s:" : ":");
    if (Object.keys(this.positions).length) u.searchParams.set("recover", b64url(JSON.stringify(this.positions)));
    if (!ws && ticket) u.searchParams.set(this.options.ticketParam, ticket);
    return u.toString();
  }

  /** @private one connection attempt */
  async open() {
    if (this.stopped) return;
    this.setState("connecting");
    let ticket = null;
    try {
      ticket = this.options.getTicket ? await this.options.getTicket() : null;
    } catch (e) {
      return this.retry(0, "getTicket failed");
    }
    if (this.stopped) return;
    let sock;
    try {
      if (this.transport === "websocket") {
        const protocols = [...this.options.protocols];
        if (ticket) protocols.push(this.options.ticketProtocol, bearer(this.options.ticketProtocol, ticket));
        sock = new WebSocket(this.target(ticket), protocols);
        sock.binaryType = "arraybuffer";
      } else {
        sock = new EventSource(this.target(ticket), { withCredentials: true });
      }
    } catch (e) {
      return this.retry(0, String(e));
    }
    this.sock = sock;
    let opened = false;
    const guard = setTimeout(() => { if (!opened) this.lost(sock, 0, "open timeout", false); }, this.options.openTimeout);
    sock.onopen = () => {
      opened = true;
      clearTimeout(guard);
      this.attempt = 0;
      this.neverOpened = 0;
      if (sock instanceof WebSocket) this.wsWorked = true;
      this.setState("open");
      this.flush();
    };
    sock.onmessage = (ev) => this.frame(ev.data);
    if (sock instanceof WebSocket) {
      sock.onclose = (ev) => { clearTimeout(guard); this.lost(sock, ev.code, ev.reason, opened); };
    } else {
      // The stream's last event says why it ends; EventSource's own retries are
      // replaced by ours (a fresh ticket each time).
      sock.addEventListener("close", (ev) => {
        let c = {};
        try { c = JSON.parse(/** @type {MessageEvent} */ (ev).data); } catch (e) { /* a bare close */ }
        clearTimeout(guard);
        this.lost(sock, c.code || 1000, c.reason || "", opened);
      });
      sock.onerror = () => { clearTimeout(guard); this.lost(sock, 1006, "", opened); };
    }
  }

  /** @private the socket ended: reconnect unless told not to */
  lost(sock, code, reason, opened) {
    if (sock !== this.sock) return;
    this.drop();
    if (this.stopped) return;
    if (this.options.stopCodes.includes(code)) {
      this.stopped = true;
      this.setState("closed", { code, reason });
      return;
    }
    // "auto": a transport that failed to open fallbackAfter times in a row gives way to
    // the other one (WebSockets blocked by a proxy, or the stream's path not served),
    // but never a WebSocket that has worked on this page: then the server is down, not
    // the transport blocked.
    if (opened) this.neverOpened = 0;
    else if (this.options.transport === "auto" && !(this.transport === "websocket" && this.wsWorked) &&
        ++this.neverOpened >= this.options.fallbackAfter) {
      this.transport = this.transport === "websocket" ? "sse" : "websocket";
      this.neverOpened = 0;
    }
    this.retry(code, reason, opened);
  }

  /** @private waits a jittered backoff, then tries again */
  retry(code, reason, dropped = false) {
    const o = this.options;
    let ceiling = Math.min(o.maxDelay, o.minDelay * 2 ** Math.min(this.attempt, 30));
    if (dropped) ceiling = Math.max(ceiling, o.spread);
    this.attempt++;
    // Full jitter: clients dropped together (a deploy) come back spread over the
    // whole interval, not in waves.
    const delay = Math.random() * ceiling;
    this.setState("waiting", { code, reason, delay });
    this.timer = setTimeout(() => this.open(), delay);
  }

  /** @private closes the current socket, if any */
  drop(code = 1000, reason = "") {
    const s = this.sock;
    this.sock = null;
    if (!s) return;
    s.onopen = s.onmessage = s.onerror = null;
    if (s instanceof WebSocket) {
      s.onclose = null;
      if (s.readyState <= 1) s.close(code, reason);
    } else s.close();
  }

  /** @private handles one frame */
  frame(data) {
    if (typeof data !== "string") return this.emit("message", data);
    let m;
    try { m = JSON.parse(data); } catch (e) { return this.emit("message", data); }
    if (m === null || typeof m !== "object" || Array.isArray(m)) return this.emit("message", m);
    const p = m.canal;
    if (p && typeof p === "object" && typeof p.group === "string") {
      this.positions[p.group] = [p.offset, p.epoch];
      delete m.canal;
    }
    switch (m.type) {
      case POSITION:
        this.positions[m.group] = [m.offset, m.epoch];
        return;
      case RECOVER:
        this.positions[m.group] = [m.offset, m.epoch];
        return this.emit("recover", { group: m.group, recovered: m.recovered, offset: m.offset, epoch: m.epoch });
      case REAUTH:
        if (m.within !== undefined) this.reauth(m);
        return;
      case "presence.join":
      case "presence.leave":
        return this.emit("presence", m);
      case "canal.refresh":
        return this.emit("refresh", m);
    }
    this.emit("message", m);
  }

  /** @private answers the server's request for a fresh credential */
  async reauth(m) {
    this.emit("reauth", m);
    const sock = this.sock;
    try {
      const credential = this.options.getTicket && (await this.options.getTicket());
      if (credential && sock === this.sock && sock instanceof WebSocket) {
        sock.send(JSON.stringify({ type: REAUTH, credential }));
      }
    } catch (e) { /* the server closes with 4401 and we reconnect with a new ticket */ }
  }

  /** @private writes one send on the open transport; false when it cannot now */
  write(data) {
    const s = this.sock;
    if (!(s instanceof WebSocket) || s.readyState !== 1) return false;
    s.send(typeof data === "string" || data instanceof ArrayBuffer || ArrayBuffer.isView(data) || data instanceof Blob
      ? data : JSON.stringify(data));
    return true;
  }

  /** @private sends the queue, in order, on the WebSocket or by HTTP POST */
  async flush() {
    if (this.state !== "open" || this.posting) return;
    if (this.sock instanceof WebSocket) {
      while (this.queue.length && this.write(this.queue[0])) this.queue.shift();
      return;
    }
    if (!this.options.postURL) return;
    this.posting = true;
    try {
      while (this.queue.length && this.state === "open") {
        const data = this.queue[0];
        const r = await fetch(this.options.postURL, {
          method: "POST", credentials: "same-origin",
          headers: { "Content-Type": "application/json", ...(this.options.postHeaders ? this.options.postHeaders() : {}) },
          body: typeof data === "string" ? data : JSON.stringify(data),
        });
        if (r.status >= 500 || r.status === 429) break; // try again at the next open
        this.queue.shift();
        if (!r.ok) this.emit("drop", { data, status: r.status });
      }
    } catch (e) { /* offline: kept for later */ }
    this.posting = false;
  }
}

/** @param {string} marker @param {string} credential */
function bearer(marker, credential) {
  return /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(credential)
    ? marker + "." + credential
    : marker + "-b64." + b64url(credential);
}

/** @param {string} s UTF-8 text to base64url without padding */
function b64url(s) {
  let bin = "";
  for (const b of new TextEncoder().encode(s)) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}
