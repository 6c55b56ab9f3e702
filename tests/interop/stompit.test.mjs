// A second client library, over STOMP on TCP: stompit reads an ERROR's body (the reason) only
// when its content-type is exactly text/plain.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { dirname } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import stompit from 'stompit';

import { tokens, within } from './helpers.mjs';

const [host, port] = (process.env.INTEROP_TCP_ADDR ?? '').split(':');
if (!port) {
  throw new Error('INTEROP_TCP_ADDR is not set: run the suite with tests/interop/run.sh');
}

function connect(passcode) {
  return new Promise((resolve, reject) => {
    const client = stompit.connect(
      {
        host,
        port: Number(port),
        ssl: process.env.INTEROP_TCP_TLS === '1',
        connectHeaders: { host: 'broker', login: 'x', passcode },
      },
      (error, connected) => (error ? reject(error) : resolve(connected)),
    );
    client.on('error', reject);
  });
}

test('stompit gets the reason of an unauthorized CONNECT', async () => {
  const probe = spawnSync(process.execPath, ['stompit-probe.cjs', `${host}:${port}`, 'not-a-token'], {
    cwd: dirname(fileURLToPath(import.meta.url)),
    encoding: 'utf-8',
    timeout: 10000,
  });
  assert.equal(probe.status, 0, probe.stderr);
  const error = JSON.parse(probe.stdout);
  assert.equal(error.message, 'unauthorized');
  assert.equal(error.longMessage, 'invalid token: InvalidToken', 'the reason line is read');
});

test('stompit sends and receives: an application error arrives on /user/queue/errors', async () => {
  const client = await within(5000, 'CONNECTED', connect(tokens.alice));
  const received = new Promise((resolve, reject) => {
    client.subscribe({ destination: '/user/queue/errors', ack: 'auto' }, (error, message) => {
      if (error) {
        reject(error);
        return;
      }
      message.readString('utf-8', (readError, body) => (readError ? reject(readError) : resolve({ headers: message.headers, body })));
    });
  });
  const frame = client.send({ destination: '/user/bob/queue/alerts' });
  frame.write('not allowed');
  frame.end();
  const { headers, body } = await within(5000, 'the error event', received);
  assert.equal(headers.event, 'error');
  assert.equal(JSON.parse(body).code, 'FORBIDDEN');
  client.disconnect();
});
