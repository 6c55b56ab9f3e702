// Topics and receipts with @stomp/stompjs.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  connectAs,
  publishConfirmed,
  receipt,
  subscribeConfirmed,
  tokens,
} from './helpers.mjs';

test('a user receives what a system publishes on /topic/announcements', async () => {
  const { client: alice } = await connectAs(tokens.alice);
  const { client: backend } = await connectAs(tokens.system);
  const inbox = await subscribeConfirmed(alice, '/topic/announcements');
  await publishConfirmed(backend, {
    destination: '/topic/announcements',
    body: 'maintenance at noon',
    headers: { 'x-origin': 'interop' },
  });
  const message = await inbox.next();
  assert.equal(message.body, 'maintenance at noon');
  assert.equal(message.headers.destination, '/topic/announcements');
  assert.equal(message.headers['x-origin'], 'interop');
  assert.ok(message.headers['message-id']);
  assert.ok(message.headers['content-type']);
  await alice.deactivate();
  await backend.deactivate();
});

test('every subscriber of a generic topic gets every message, in order', async () => {
  const { client: one } = await connectAs(tokens.system);
  const { client: two } = await connectAs(tokens.system);
  const first = await subscribeConfirmed(one, '/topic/interop.news');
  const second = await subscribeConfirmed(two, '/topic/interop.news');
  for (let i = 0; i < 10; i++) {
    one.publish({ destination: '/topic/interop.news', body: `m${i}` });
  }
  for (const inbox of [first, second]) {
    const bodies = [];
    for (let i = 0; i < 10; i++) {
      bodies.push((await inbox.next()).body);
    }
    assert.deepEqual(bodies, [...Array(10).keys()].map((i) => `m${i}`));
  }
  await one.deactivate();
  await two.deactivate();
});

test('UTF-8 and binary bodies arrive intact', async () => {
  const { client } = await connectAs(tokens.system);
  const inbox = await subscribeConfirmed(client, '/topic/interop.bodies');
  client.publish({ destination: '/topic/interop.bodies', body: '你好，世界 👋' });
  const binary = new Uint8Array([0, 255, 1, 254, 0]);
  client.publish({
    destination: '/topic/interop.bodies',
    binaryBody: binary,
    headers: { 'content-type': 'application/octet-stream' },
  });
  assert.equal((await inbox.next()).body, '你好，世界 👋');
  const received = await inbox.next();
  assert.deepEqual([...received.binaryBody], [...binary]);
  await client.deactivate();
});

test('watchForReceipt gets the RECEIPT of a SEND', async () => {
  const { client } = await connectAs(tokens.system);
  const done = receipt(client, 'receipt-42');
  client.publish({
    destination: '/topic/interop.receipts',
    body: 'x',
    headers: { receipt: 'receipt-42' },
  });
  const frame = await done;
  assert.equal(frame.headers['receipt-id'], 'receipt-42');
  await client.deactivate();
});

test('after unsubscribe nothing more arrives', async () => {
  const { client } = await connectAs(tokens.system);
  const inbox = await subscribeConfirmed(client, '/topic/interop.unsub');
  await publishConfirmed(client, { destination: '/topic/interop.unsub', body: 'one' });
  assert.equal((await inbox.next()).body, 'one');
  inbox.subscription.unsubscribe();
  await publishConfirmed(client, { destination: '/topic/interop.unsub', body: 'two' });
  assert.ok(await inbox.quiet(200));
  await client.deactivate();
});
