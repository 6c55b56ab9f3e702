// Connecting with @stomp/stompjs: the three places a token may be, and a refusal.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import WebSocket from 'ws';

import { closed, connect, connectAs, makeClient, nextError, tokens, url } from './helpers.mjs';

test('connects with the token in an Authorization header', async () => {
  const { client, frame } = await connectAs(tokens.alice);
  assert.equal(frame.headers.version, '1.2');
  assert.equal(frame.headers['user-name'], 'alice');
  assert.match(frame.headers.server, /^broker\//);
  assert.ok(frame.headers.session);
  await client.deactivate();
});

test('connects with the token as passcode', async () => {
  const { client, frame } = await connect({
    connectHeaders: { login: 'bob', passcode: tokens.bob },
  });
  assert.equal(frame.headers['user-name'], 'bob');
  await client.deactivate();
});

test('connects with the token in the access_token query parameter', async () => {
  const { client, frame } = await connect({
    brokerURL: `${url}?access_token=${encodeURIComponent(tokens.alice)}`,
  });
  assert.equal(frame.headers['user-name'], 'alice');
  await client.deactivate();
});

test('negotiates the v12.stomp subprotocol', async () => {
  let socket;
  const { client } = await connectAs(tokens.alice, {
    webSocketFactory: () => {
      socket = new WebSocket(url, ['v10.stomp', 'v11.stomp', 'v12.stomp']);
      return socket;
    },
  });
  assert.equal(socket.protocol, 'v12.stomp');
  await client.deactivate();
});

test('a CONNECT without a token gets ERROR unauthorized and the connection closes', async () => {
  const client = makeClient();
  client.activate();
  const error = await nextError(client);
  assert.equal(error.headers.message, 'unauthorized');
  const close = await closed(client);
  assert.ok(close);
  await client.deactivate();
});

test('a bad token gets ERROR unauthorized', async () => {
  const client = makeClient({ connectHeaders: { Authorization: 'Bearer not.a.token' } });
  client.activate();
  const error = await nextError(client);
  assert.equal(error.headers.message, 'unauthorized');
  await client.deactivate();
});
