// The IM layer with @stomp/stompjs: a private chat, a group chat created over REST, and a read
// receipt. Runs against the broker run.sh started, with its default limits: each user sends at
// most one message to the other before a reply, so every test sends in one direction only.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { connectAs, receipt, subscribeConfirmed, tokens, url } from './helpers.mjs';

/** http://host:port of the broker, from its WebSocket URL. */
const httpBase = url.replace(/^ws/, 'http').replace(/\/ws\/im$/, '');

/** A REST call with `token`; resolves with the status and the JSON body. */
async function api(method, path, token, body) {
  const response = await fetch(`${httpBase}/api/v1${path}`, {
    method,
    headers: {
      Authorization: `Bearer ${token}`,
      'Content-Type': 'application/json',
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

/** A connected user with its user queues subscribed. */
async function imUser(token) {
  const { client } = await connectAs(token);
  const queues = {};
  for (const queue of ['messages', 'events', 'errors']) {
    queues[queue] = await subscribeConfirmed(client, `/user/queue/${queue}`);
  }
  return { client, ...queues };
}

/** Sends JSON to an /app or topic destination and waits for the RECEIPT. */
async function sendJson(client, destination, value) {
  const id = `r-${Math.random().toString(36).slice(2)}`;
  const confirmed = receipt(client, id);
  client.publish({
    destination,
    body: JSON.stringify(value),
    headers: { 'content-type': 'application/json', receipt: id },
  });
  return confirmed;
}

/** The next MESSAGE of an inbox, which must carry `event:<name>`; resolves with its JSON. */
async function nextEvent(inbox, name) {
  const message = await inbox.next();
  assert.equal(message.headers.event, name, message.body);
  assert.equal(message.headers['content-type'], 'application/json');
  return JSON.parse(message.body);
}

const unique = () => `${Date.now()}-${Math.random().toString(36).slice(2)}`;

test('a private message sent with a receipt reaches the peer as message.new', async () => {
  const alice = await imUser(tokens.alice);
  const bob = await imUser(tokens.bob);
  const clientMsgId = `interop-${unique()}`;
  await sendJson(alice.client, '/app/private.send', {
    to: 'bob',
    clientMsgId,
    format: 'text',
    content: '你好 bob',
  });
  const message = await nextEvent(bob.messages, 'message.new');
  assert.equal(message.conversationId, 'private_alice_bob');
  assert.equal(message.conversationType, 'private');
  assert.equal(message.senderId, 'alice');
  assert.equal(message.clientMsgId, clientMsgId);
  assert.equal(message.content, '你好 bob');
  assert.equal(typeof message.id, 'string');
  assert.ok(message.seq >= 1);
  // The sender's own session gets it too, then learns it was delivered.
  const own = await nextEvent(alice.messages, 'message.new');
  assert.equal(own.id, message.id);
  const delivered = await nextEvent(alice.events, 'message.delivered');
  assert.deepEqual(delivered, {
    conversationId: 'private_alice_bob',
    messageId: message.id,
    seq: message.seq,
  });
  assert.ok(await bob.errors.quiet(100));
  await alice.client.deactivate();
  await bob.client.deactivate();
});

test('a group created over REST carries messages to its members on the group topic', async () => {
  const created = await api('POST', '/groups', tokens.alice, {
    name: 'interop group',
    memberIds: ['bob'],
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const group = created.body.id;
  assert.match(group, /^group_[0-9a-f]{32}$/);
  assert.equal(created.body.ownerId, 'alice');

  const alice = await imUser(tokens.alice);
  const bob = await imUser(tokens.bob);
  const topic = `/topic/group.${group}`;
  const aliceTopic = await subscribeConfirmed(alice.client, topic);
  const bobTopic = await subscribeConfirmed(bob.client, topic);
  await sendJson(alice.client, '/app/group.send', {
    conversationId: group,
    clientMsgId: `g-${unique()}`,
    format: 'text',
    content: 'hello group',
  });
  // A SEND to the topic itself is a group send too.
  await sendJson(bob.client, topic, {
    clientMsgId: `g-${unique()}`,
    format: 'text',
    content: 'hello back',
  });
  for (const inbox of [aliceTopic, bobTopic]) {
    const first = await nextEvent(inbox, 'message.new');
    const second = await nextEvent(inbox, 'message.new');
    assert.deepEqual(
      [first.seq, first.senderId, first.content, second.seq, second.senderId, second.content],
      [1, 'alice', 'hello group', 2, 'bob', 'hello back'],
    );
    assert.equal(first.conversationId, group);
    assert.equal(first.conversationType, 'group');
  }
  const history = await api('GET', `/conversations/${group}/messages`, tokens.bob);
  assert.equal(history.status, 200);
  assert.deepEqual(
    history.body.items.map((m) => m.content),
    ['hello group', 'hello back'],
  );
  await alice.client.deactivate();
  await bob.client.deactivate();
});

test('reading over /app/message.read sends message.read to the other user', async () => {
  const alice = await imUser(tokens.alice);
  const bob = await imUser(tokens.bob);
  await sendJson(bob.client, '/app/private.send', {
    to: 'alice',
    clientMsgId: `read-${unique()}`,
    format: 'text',
    content: 'please read',
  });
  const message = await nextEvent(alice.messages, 'message.new');
  await sendJson(alice.client, '/app/message.read', {
    conversationId: message.conversationId,
    upToSeq: message.seq,
  });
  // Bob's events queue may first hold the delivery of his message and, when his message
  // answered one he had not read, his own read position moving (sending marks read).
  let event = await bob.events.next();
  while (['message.delivered', 'conversation.updated'].includes(event.headers.event)) {
    event = await bob.events.next();
  }
  assert.equal(event.headers.event, 'message.read', event.body);
  assert.deepEqual(JSON.parse(event.body), {
    conversationId: 'private_alice_bob',
    readerId: 'alice',
    upToSeq: message.seq,
  });
  const unread = await api('GET', '/unread', tokens.alice);
  assert.equal(unread.status, 200);
  assert.equal(
    unread.body.conversations.find((c) => c.id === 'private_alice_bob')?.unreadCount ?? 0,
    0,
  );
  await alice.client.deactivate();
  await bob.client.deactivate();
});
