// Transactions with @stomp/stompjs: client.begin(), tx.commit(), tx.abort().

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { connectAs, publishConfirmed, receipt, subscribeConfirmed, tokens } from './helpers.mjs';

test('sends in a transaction arrive in order only at commit', async () => {
  const { client: listener } = await connectAs(tokens.alice);
  const inbox = await subscribeConfirmed(listener, '/topic/announcements');
  const { client } = await connectAs(tokens.system);
  const tx = client.begin();
  for (const body of ['one', 'two', 'three']) {
    client.publish({
      destination: '/topic/announcements',
      body,
      headers: { transaction: tx.id },
    });
  }
  // A receipted frame after the sends: they have been handled (and held) by now.
  await publishConfirmed(client, { destination: '/topic/interop.elsewhere', body: 'x' });
  assert.ok(await inbox.quiet(200), 'nothing before COMMIT');
  tx.commit();
  const bodies = [];
  for (let i = 0; i < 3; i++) {
    bodies.push((await inbox.next()).body);
  }
  assert.deepEqual(bodies, ['one', 'two', 'three']);
  await client.deactivate();
  await listener.deactivate();
});

test('abort discards the sends of a transaction', async () => {
  const { client: listener } = await connectAs(tokens.alice);
  const inbox = await subscribeConfirmed(listener, '/topic/announcements');
  const { client } = await connectAs(tokens.system);
  const tx = client.begin('interop-abort');
  assert.equal(tx.id, 'interop-abort');
  client.publish({
    destination: '/topic/announcements',
    body: 'never',
    headers: { transaction: tx.id },
  });
  tx.abort();
  await publishConfirmed(client, { destination: '/topic/announcements', body: 'after' });
  assert.equal((await inbox.next()).body, 'after');
  assert.ok(await inbox.quiet(200));
  await client.deactivate();
  await listener.deactivate();
});

test('an ACK inside a transaction takes effect at commit', async () => {
  const queue = '/queue/interop.txack';
  const { client: worker } = await connectAs(tokens.system);
  const inbox = await subscribeConfirmed(worker, queue, { ack: 'client-individual' });
  const { client: producer } = await connectAs(tokens.system);
  await publishConfirmed(producer, { destination: queue, body: 'job' });
  const message = await inbox.next();
  const tx = worker.begin();
  message.ack({ transaction: tx.id });
  const committed = receipt(worker, 'tx-commit');
  tx.commit();
  // A receipted frame after COMMIT: the commit has been applied by then.
  worker.unsubscribe('no-such-subscription', { receipt: 'tx-commit' });
  await committed;
  await worker.deactivate();

  const { client: next } = await connectAs(tokens.system);
  const after = await subscribeConfirmed(next, queue, { ack: 'client-individual' });
  assert.ok(await after.quiet(200), 'the committed ACK settled the message');
  await next.deactivate();
  await producer.deactivate();
});
