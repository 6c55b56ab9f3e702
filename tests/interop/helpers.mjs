// Shared helpers for the interop tests: @stomp/stompjs clients on the broker that run.sh
// started. run.sh exports INTEROP_WS_URL and the tokens it minted with `broker token`.

import { Client } from '@stomp/stompjs';
import WebSocket from 'ws';

// stomp.js uses the browser's WebSocket; in Node the `ws` package stands in for it.
Object.assign(globalThis, { WebSocket });

function required(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set: run the suite with tests/interop/run.sh`);
  }
  return value;
}

/** ws://host:port/ws/im */
export const url = required('INTEROP_WS_URL');

/** Tokens minted by `broker token`. */
export const tokens = {
  system: required('INTEROP_TOKEN_SYSTEM'),
  alice: required('INTEROP_TOKEN_ALICE'),
  bob: required('INTEROP_TOKEN_BOB'),
};

/** The heart-beat interval (ms) the broker offers in this run. */
export const heartbeatMs = Number(process.env.INTEROP_HEARTBEAT_MS ?? '200');

/** Rejects after `ms` with `what` unless `promise` settles first. */
export function within(ms, what, promise) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A stomp.js client that does not reconnect and keeps what happens to it: `errors` (ERROR
 * frames), `closes` (WebSocket close events), and `debugLines`.
 */
export function makeClient(options = {}) {
  const client = new Client({
    brokerURL: url,
    reconnectDelay: 0,
    // No watchdog timer of stomp.js's own (it would outlive a refused connection and keep the
    // test process alive): the helpers below bound every wait.
    connectionTimeout: 0,
    ...options,
  });
  client.errors = [];
  client.closes = [];
  client.debugLines = [];
  client.debug = (line) => client.debugLines.push(line);
  const onStompError = options.onStompError;
  client.onStompError = (frame) => {
    client.errors.push(frame);
    onStompError?.(frame);
  };
  const onWebSocketClose = options.onWebSocketClose;
  client.onWebSocketClose = (event) => {
    client.closes.push(event);
    onWebSocketClose?.(event);
  };
  return client;
}

/**
 * Activates a client and resolves with it and its CONNECTED frame; rejects on an ERROR or a
 * close before CONNECTED.
 */
export function connect(options = {}) {
  const client = makeClient(options);
  const connected = new Promise((resolve, reject) => {
    client.onConnect = (frame) => resolve({ client, frame });
    const error = client.onStompError;
    client.onStompError = (frame) => {
      error(frame);
      reject(new Error(`ERROR ${frame.headers.message}: ${frame.body}`));
    };
    const close = client.onWebSocketClose;
    client.onWebSocketClose = (event) => {
      close(event);
      reject(new Error(`closed before CONNECTED (${event.code})`));
    };
  });
  client.activate();
  return within(5000, 'CONNECTED', connected);
}

/** Connects with `Authorization: Bearer <token>` in the CONNECT headers. */
export function connectAs(token, options = {}) {
  return connect({ connectHeaders: { Authorization: `Bearer ${token}` }, ...options });
}

/** Resolves with the next ERROR frame the client gets. */
export function nextError(client) {
  const seen = client.errors.length;
  return within(
    5000,
    'an ERROR frame',
    new Promise((resolve) => {
      const poll = () =>
        client.errors.length > seen ? resolve(client.errors[seen]) : setTimeout(poll, 5);
      poll();
    }),
  );
}

/** Resolves when the WebSocket has closed. */
export function closed(client) {
  return within(
    5000,
    'the WebSocket close',
    new Promise((resolve) => {
      const poll = () => (client.closes.length > 0 ? resolve(client.closes[0]) : setTimeout(poll, 5));
      poll();
    }),
  );
}

/**
 * Subscribes and collects the messages: `inbox.next()` resolves with the next one,
 * `inbox.messages` holds all of them.
 */
export function subscribeInbox(client, destination, headers = {}) {
  const inbox = { messages: [], taken: 0 };
  inbox.subscription = client.subscribe(destination, (message) => inbox.messages.push(message), headers);
  inbox.next = (ms = 5000) =>
    within(
      ms,
      `a MESSAGE on ${destination}`,
      new Promise((resolve) => {
        const poll = () =>
          inbox.messages.length > inbox.taken
            ? resolve(inbox.messages[inbox.taken++])
            : setTimeout(poll, 5);
        poll();
      }),
    );
  /** Waits `ms` and checks that nothing more arrived. */
  inbox.quiet = async (ms = 200) => {
    await sleep(ms);
    return inbox.messages.length === inbox.taken;
  };
  return inbox;
}

/** Resolves with the RECEIPT frame for `receiptId` (to be set up before sending the frame). */
export function receipt(client, receiptId) {
  return within(
    5000,
    `RECEIPT ${receiptId}`,
    new Promise((resolve) => client.watchForReceipt(receiptId, resolve)),
  );
}

/**
 * Subscribes with a receipt and waits for it, so that what is published next is received.
 */
export async function subscribeConfirmed(client, destination, headers = {}) {
  const id = `sub-${Math.random().toString(36).slice(2)}`;
  const confirmed = receipt(client, id);
  const inbox = subscribeInbox(client, destination, { ...headers, receipt: id });
  await confirmed;
  return inbox;
}

/** Publishes with a receipt and waits for it. */
export async function publishConfirmed(client, params) {
  const id = `pub-${Math.random().toString(36).slice(2)}`;
  const confirmed = receipt(client, id);
  client.publish({ ...params, headers: { ...(params.headers ?? {}), receipt: id } });
  return confirmed;
}
