// Vectra browser client: subscribe to channels on /ws and never miss an event.
//
//   import { subscribe } from "/client.js";
//   const sub = subscribe(["game.*"], { onEvent: (e) => console.log(e.seq, e.type, e.data) });
//
// Same resume logic as the Python client (core/client.py): it remembers the last `seq` it handed
// over; after any drop (network, foundation restart, or a 1008 close for reading too slowly) it
// reconnects and resubscribes with `from_seq = last + 1`, so the caller sees every event once, in
// `seq` order. A range the foundation no longer holds arrives as an explicit `gap` (onGap).

const RETRY_FIRST_MS = 250;
const RETRY_MAX_MS = 10000;

export function defaultUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws`;
}

export function subscribe(channels, options = {}) {
  return new Subscription(channels, options);
}

export class Subscription {
  constructor(channels, { url = defaultUrl(), fromSeq = null, token = null,
                          onEvent = () => {}, onGap = () => {}, onReply = () => {},
                          onControl = () => {}, onStatus = () => {} } = {}) {
    this.url = url;
    this.channels = [...channels];
    this.lastSeq = fromSeq === null ? null : fromSeq - 1;
    this.token = token;
    this.handlers = { onEvent, onGap, onReply, onControl, onStatus };
    this.closed = false;
    this.retries = 0;
    this.socket = null;
    this._connect();
  }

  /** Replace the subscribed patterns; events already received are not repeated. */
  setChannels(channels) {
    const old = this.channels;
    this.channels = [...channels];
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      if (old.length) this.send({ action: "unsubscribe", channels: old });
      this.send({ action: "subscribe", channels: this.channels });
    }
  }

  /** Send any command (ping, snapshot, health, control); the reply goes to onReply. */
  send(command) {
    const withToken = this.token && !("token" in command) ? { ...command, token: this.token } : command;
    this.socket.send(JSON.stringify(withToken));
  }

  close() {
    this.closed = true;
    if (this.socket) this.socket.close(1000, "client closed");
  }

  _connect() {
    this.handlers.onStatus({ state: "connecting", url: this.url });
    const socket = new WebSocket(this.url);
    this.socket = socket;
    socket.onopen = () => {
      this.retries = 0;
      this.handlers.onStatus({ state: "connected", url: this.url });
      const command = { action: "subscribe", channels: this.channels };
      if (this.lastSeq !== null) command.from_seq = this.lastSeq + 1;
      this.send(command);
    };
    socket.onmessage = (message) => this._receive(JSON.parse(message.data));
    socket.onclose = (event) => {
      this.handlers.onStatus({ state: "disconnected", code: event.code, reason: event.reason });
      if (this.closed) return;
      const delay = Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** this.retries) * (0.5 + Math.random() / 2);
      this.retries += 1;
      setTimeout(() => this._connect(), delay);
    };
  }

  _receive(message) {
    if (typeof message.seq === "number" && "v" in message) {
      if (this.lastSeq !== null && message.seq <= this.lastSeq) return; // already handed over
      this.lastSeq = message.seq;
      this.handlers.onEvent(message);
    } else if (message.type === "gap") {
      this.lastSeq = Math.max(this.lastSeq ?? 0, message.to_seq);
      this.handlers.onGap(message);
    } else if (message.type && message.type.startsWith("sys.")) {
      this.handlers.onControl(message);
    } else {
      if (message.type === "subscribed" && this.lastSeq === null) this.lastSeq = message.seq;
      this.handlers.onReply(message);
    }
  }
}
