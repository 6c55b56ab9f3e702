// ERROR frames reach onStompError.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { closed, connectAs, nextError, receipt, subscribeInbox, tokens } from './helpers.mjs';

test('a SEND to a forbidden destination reaches onStompError, then the connection closes', async () => {
  const { client } = await connectAs(tokens.alice);
  client.publish({
    destination: '/topic/announcements',
    body: 'users may not announce',
    headers: { receipt: 'forbidden-send' },
  });
  const error = await nextError(client);
  assert.equal(error.headers.message, 'forbidden');
  assert.equal(error.headers['receipt-id'], 'forbidden-send');
  await closed(client);
  await client.deactivate();
});

test('a SUBSCRIBE to an unknown destination reaches onStompError', async () => {
  const { client } = await connectAs(tokens.alice);
  client.subscribe('/exchange/amq.topic', () => {});
  const error = await nextError(client);
  assert.equal(error.headers.message, 'forbidden');
  await client.deactivate();
});

test('an application error arrives on /user/queue/errors and the connection stays open', async () => {
  const { client } = await connectAs(tokens.alice);
  const errors = subscribeInbox(client, '/user/queue/errors');
  client.publish({ destination: '/user/bob/queue/alerts', body: 'not allowed' });
  const message = await errors.next();
  assert.equal(message.headers.event, 'error');
  assert.equal(JSON.parse(message.body).code, 'FORBIDDEN');
  // The session is still open: a receipted frame is answered.
  const alive = receipt(client, 'still-open');
  client.unsubscribe('no-such-subscription', { receipt: 'still-open' });
  await alive;
  assert.equal(client.errors.length, 0);
  assert.ok(client.connected);
  await client.deactivate();
});
