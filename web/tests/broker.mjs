// The broker process of the browser tests: the binary built by run.sh, on a fixed free port and
// a temporary data directory, so that it can be stopped and started again in the same place.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export async function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

export class Broker {
  // `env`: extra BROKER_* settings of this test file's broker.
  constructor({ binary, webDir, port, env = {} }) {
    this.binary = binary;
    this.webDir = webDir;
    this.port = port;
    this.extraEnv = env;
    this.dir = mkdtempSync(join(tmpdir(), "broker-web-"));
    this.log = [];
    this.child = null;
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  env() {
    // Only this run's settings: nothing from the caller's environment or a broker.toml.
    const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("BROKER_")));
    return {
      ...env,
      BROKER_SERVER_HTTP_ADDR: `127.0.0.1:${this.port}`,
      BROKER_SERVER_WEB_DIR: this.webDir,
      BROKER_CLUSTER_NODE_ID: "web-test",
      // The shipped send and stranger limits would stop the scripted chats after a few messages.
      BROKER_LIMITS_SEND_RATE: "100000/1s",
      BROKER_LIMITS_STRANGER_BEFORE_REPLY: "100000",
      BROKER_LIMITS_STRANGER_RATE: "100000/1s",
      // Small enough for the test to show the page's size error without a large upload.
      BROKER_LIMITS_FILE_MAX_BYTES: "100000",
      NO_COLOR: "1",
      RUST_LOG: "info",
      ...this.extraEnv,
    };
  }

  async start() {
    const child = spawn(this.binary, ["--dev"], { cwd: this.dir, env: this.env(), stdio: ["ignore", "pipe", "pipe"] });
    this.child = child;
    const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
    this.exited = exited;
    const listening = new Promise((resolve) => {
      const scan = (chunk) => {
        const text = chunk.toString();
        this.log.push(text);
        if (/listening for HTTP/.test(text)) resolve();
      };
      child.stdout.on("data", scan);
      child.stderr.on("data", scan);
    });
    const outcome = await Promise.race([
      listening.then(() => "up"),
      exited.then(() => "exited"),
      new Promise((resolve) => setTimeout(() => resolve("timeout"), 30_000)),
    ]);
    if (outcome !== "up") throw new Error(`broker did not start (${outcome}):\n${this.log.join("")}`);
  }

  async stop() {
    if (!this.child || this.child.exitCode !== null) return;
    this.child.kill("SIGTERM");
    await this.exited;
    this.child = null;
  }

  async restart() {
    await this.stop();
    await this.start();
  }

  async dispose() {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }

  tail(lines = 40) {
    return this.log.join("").split("\n").slice(-lines).join("\n");
  }
}
