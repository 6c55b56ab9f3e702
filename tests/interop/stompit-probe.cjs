// Run by stompit.test.mjs in a process of its own: connects with stompit over TCP to the
// address and passcode given, and prints as JSON the error stompit raises. stompit 1.0.0 raises
// an ERROR whose content-type is exactly text/plain, with its body as `longMessage`, on the
// frame's stream, which has no listener: it can only be caught as an uncaught exception.
const stompit = require('stompit');

const [host, port] = process.argv[2].split(':');
process.on('uncaughtException', (error) => {
  console.log(JSON.stringify({ message: error.message, longMessage: error.longMessage ?? null }));
  process.exit(0);
});
const client = stompit.connect(
  {
    host,
    port: Number(port),
    ssl: process.env.INTEROP_TCP_TLS === '1',
    connectHeaders: { host: 'broker', login: 'x', passcode: process.argv[3] },
  },
  () => {},
);
client.on('error', () => {});
setTimeout(() => process.exit(1), 5000);
