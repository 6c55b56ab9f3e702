// Generic queues with client-individual acknowledgement, with @stomp/stompjs.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { connectAs, publishConfirmed, subscribeConfirmed, tokens } from './helpers.mjs';

const ack = { ack: 'client-individual' };

test('a NACKed message is delivered again to another consumer, marked redelivered', async () => {
  const queue = '/queue/interop.nack';
  const { client: one } = await connectAs(tokens.system);
  const first = await subscribeConfirmed(one, queue, ack);
  const { client: producer } = await connectAs(tokens.system);
  await publishConfirmed(producer, { destination: queue, body: 'job-1' });
  const message = await first.next();
  assert.equal(message.body, 'job-1');
  assert.ok(message.headers.ack, 'a client-individual MESSAGE carries an ack header');

  const { client: two } = await connectAs(tokens.system);
  const second = await subscribeConfirmed(two, queue, ack);
  message.nack();
  const again = await second.next();
  assert.equal(again.body, 'job-1');
  assert.equal(again.headers.redelivered, 'true');
  again.ack();
  assert.ok(await first.quiet(200), 'the consumer that refused it does not get it back');
  for (const client of [one, two, producer]) {
    await client.deactivate();
  }
});

test('an ACKed message is not delivered again; an unacked one is, when its consumer leaves', async () => {
  const queue = '/queue/interop.ack';
  const { client: one } = await connectAs(tokens.system);
  const first = await subscribeConfirmed(one, queue, ack);
  const { client: producer } = await connectAs(tokens.system);
  await publishConfirmed(producer, { destination: queue, body: 'acked' });
  await publishConfirmed(producer, { destination: queue, body: 'left unacked' });
  const acked = await first.next();
  await first.next();
  assert.equal(acked.body, 'acked');
  acked.ack();
  await one.deactivate();

  const { client: two } = await connectAs(tokens.system);
  const second = await subscribeConfirmed(two, queue, ack);
  const redelivered = await second.next();
  assert.equal(redelivered.body, 'left unacked');
  assert.equal(redelivered.headers.redelivered, 'true');
  redelivered.ack();
  assert.ok(await second.quiet(200));
  await two.deactivate();
  await producer.deactivate();
});

test('messages wait in the queue and go round-robin to consumers', async () => {
  const queue = '/queue/interop.rr';
  const { client: producer } = await connectAs(tokens.system);
  for (let i = 1; i <= 4; i++) {
    await publishConfirmed(producer, { destination: queue, body: `m${i}` });
  }
  const { client: one } = await connectAs(tokens.system);
  const first = await subscribeConfirmed(one, queue);
  const waited = [];
  for (let i = 0; i < 4; i++) {
    waited.push((await first.next()).body);
  }
  assert.deepEqual(waited, ['m1', 'm2', 'm3', 'm4']);

  const { client: two } = await connectAs(tokens.system);
  const second = await subscribeConfirmed(two, queue);
  for (let i = 5; i <= 8; i++) {
    await publishConfirmed(producer, { destination: queue, body: `m${i}` });
  }
  const a = [(await first.next()).body, (await first.next()).body];
  const b = [(await second.next()).body, (await second.next()).body];
  assert.deepEqual([...a, ...b].sort(), ['m5', 'm6', 'm7', 'm8']);
  for (const client of [one, two, producer]) {
    await client.deactivate();
  }
});
