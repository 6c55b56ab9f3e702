// Heart-beats negotiated with @stomp/stompjs keep the connection up.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import WebSocket from 'ws';

import { connectAs, heartbeatMs, publishConfirmed, sleep, tokens, url } from './helpers.mjs';

test('heart-beats are negotiated and the connection stays up across several intervals', async () => {
  let socket;
  let eols = 0;
  const { client, frame } = await connectAs(tokens.system, {
    heartbeatIncoming: heartbeatMs,
    heartbeatOutgoing: heartbeatMs,
    webSocketFactory: () => {
      socket = new WebSocket(url, ['v12.stomp', 'v11.stomp', 'v10.stomp']);
      socket.on('message', (data) => {
        if (data.toString() === '\n') {
          eols += 1;
        }
      });
      return socket;
    },
  });
  assert.equal(frame.headers['heart-beat'], `${heartbeatMs},${heartbeatMs}`);
  assert.ok(
    client.debugLines.some((line) => line.includes(`send PING every ${heartbeatMs}ms`)),
    client.debugLines.join('\n'),
  );
  assert.ok(client.debugLines.some((line) => line.includes(`check PONG every ${heartbeatMs}ms`)));

  await sleep(heartbeatMs * 6);
  assert.equal(client.closes.length, 0, 'still connected');
  assert.ok(client.connected);
  assert.ok(eols >= 3, `the broker sent heart-beats: ${eols}`);
  // And it still works.
  await publishConfirmed(client, { destination: '/topic/interop.hb', body: 'alive' });
  await client.deactivate();
});
