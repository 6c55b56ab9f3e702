// Attachments that point away from the broker, in headless Chromium: a message naming a foreign
// server (here a local HTTPS server listed in files.external_url_prefixes, which records every
// request and would answer a credentialed cross-origin fetch) must not make the page send the
// viewer's token anywhere. The page draws such an attachment as a plain link and fetches
// nothing for it; only this broker's own files are fetched with the token.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:https";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { Broker, freePort } from "./broker.mjs";
import { png } from "./png.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const binary = process.env.WEB_TEST_BROKER;
const webDir = resolve(process.env.WEB_TEST_WEB_DIR ?? join(here, "..", "dist"));
const output = resolve(process.env.WEB_TEST_OUTPUT ?? join(here, "..", "test-output"));
const chromiumPath = process.env.WEB_TEST_CHROMIUM ?? "/usr/bin/chromium";
const WAIT = 15_000;

assert.ok(binary, "WEB_TEST_BROKER must name the broker binary (tests/run.sh sets it)");
mkdirSync(output, { recursive: true });

let broker;
let browser;
let foreign;
let foreignOrigin;
let certDir;
// Every request the foreign server received: { method, path, headers }.
const received = [];

// A self-signed certificate for 127.0.0.1, made for this run.
function certificate() {
  certDir = mkdtempSync(join(tmpdir(), "broker-web-cert-"));
  const key = join(certDir, "key.pem");
  const cert = join(certDir, "cert.pem");
  execFileSync("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1",
    "-addext", "subjectAltName=IP:127.0.0.1",
  ], { stdio: "ignore" });
  return { key: readFileSync(key), cert: readFileSync(cert) };
}

// The foreign server: records each request and, like a server that wants the token, allows any
// origin to send an Authorization header.
async function startForeign() {
  const server = createServer(certificate(), (request, response) => {
    received.push({ method: request.method, path: request.url, headers: request.headers });
    response.setHeader("Access-Control-Allow-Origin", "*");
    response.setHeader("Access-Control-Allow-Headers", "Authorization");
    response.setHeader("Access-Control-Allow-Methods", "GET");
    if (request.method === "OPTIONS") {
      response.writeHead(204).end();
      return;
    }
    response.writeHead(200, { "Content-Type": "image/png" }).end(png(8, 8));
  });
  const port = await freePort();
  await new Promise((ok) => server.listen(port, "127.0.0.1", ok));
  return { server, origin: `https://127.0.0.1:${port}` };
}

async function devToken(sub) {
  const response = await fetch(`${broker.url}/api/v1/dev/token`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ sub }),
  });
  assert.equal(response.status, 200);
  return (await response.json()).token;
}

async function api(token, method, path, body, type = "application/json") {
  const response = await fetch(`${broker.url}/api/v1${path}`, {
    method,
    headers: { Authorization: `Bearer ${token}`, "Content-Type": type },
    body: type === "application/json" ? JSON.stringify(body) : body,
  });
  return { status: response.status, body: await response.json() };
}

before(async () => {
  ({ server: foreign, origin: foreignOrigin } = await startForeign());
  broker = new Broker({
    binary,
    webDir,
    port: await freePort(),
    env: { BROKER_FILES_EXTERNAL_URL_PREFIXES: JSON.stringify([`${foreignOrigin}/`]) },
  });
  await broker.start();
  browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
  });
});

after(async () => {
  await browser?.close();
  foreign?.close();
  if (certDir) rmSync(certDir, { recursive: true, force: true });
  if (broker) {
    if (process.exitCode) console.error(broker.tail());
    await broker.dispose();
  }
});

test("an attachment on a foreign server never gets the viewer's token", async () => {
  // The page would reach the foreign server if it tried: its certificate is accepted.
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1100, height: 720 } });
  const requests = [];
  context.on("request", (request) => requests.push(request));
  const page = await context.newPage();
  page.on("pageerror", (error) => console.error(`[alice] page error: ${error.message}`));
  await page.goto(broker.url);
  await page.getByLabel("User id").fill("alice");
  await page.getByRole("button", { name: "Try as this user" }).click();
  await page.locator('.status[data-state="online"]').waitFor({ timeout: WAIT });

  // Bob sends alice attachments on the foreign server (the broker admits the listed prefix),
  // then an image uploaded to the broker, which the page must still load with the token.
  const bob = await devToken("bob");
  const foreignImage = { url: `${foreignOrigin}/steal.png`, thumbnailUrl: `${foreignOrigin}/steal-thumb.png`, name: "cute cat.png", size: 10, mime: "image/png" };
  const foreignFile = { url: `${foreignOrigin}/report.pdf`, name: "report.pdf", size: 10, mime: "application/pdf" };
  for (const [n, format, attachment] of [[1, "image", foreignImage], [2, "file", foreignFile]]) {
    const sent = await api(bob, "POST", "/messages", { to: "alice", clientMsgId: `foreign-${n}`, format, content: "", attachment });
    assert.equal(sent.status, 201, JSON.stringify(sent.body));
  }
  const upload = await api(bob, "POST", "/files?name=own.png", png(40, 30), "image/png");
  assert.equal(upload.status, 201, JSON.stringify(upload.body));
  const own = await api(bob, "POST", "/messages", { to: "alice", clientMsgId: "own", format: "image", content: "", attachment: upload.body });
  assert.equal(own.status, 201, JSON.stringify(own.body));

  await page.locator(".conversation", { has: page.locator(".title", { hasText: /^bob$/ }) }).getByRole("button").click();
  // The broker's own image is drawn after the foreign ones, so once it has loaded every fetch
  // the page would make for the earlier messages has been made.
  await page.waitForFunction(
    () => [...document.querySelectorAll(".msg img")].some((i) => i.complete && i.naturalWidth > 0 && i.src.startsWith("blob:")),
    null,
    { timeout: WAIT },
  );
  await page.screenshot({ path: join(output, "foreign-attachments.png") });
  for (const r of received) {
    assert.equal(r.headers.authorization, undefined, `${r.method} ${r.path} carried Authorization`);
  }
  assert.deepEqual(received, [], "the page fetched nothing from the foreign server by itself");

  const links = page.locator(".msg a.external");
  assert.equal(await links.count(), 2);
  for (const link of await links.all()) {
    assert.equal(await link.getAttribute("rel"), "noopener noreferrer");
    assert.equal(await link.getAttribute("target"), "_blank");
    assert.ok((await link.getAttribute("href")).startsWith(foreignOrigin));
  }
  const imageSources = await page.locator(".msg img").evaluateAll((images) => images.map((i) => i.src));
  assert.ok(imageSources.every((src) => src.startsWith("blob:")), `no foreign <img>: ${imageSources}`);

  // Opening the link is the user's choice: a plain navigation, without the token or a referrer.
  const [tab] = await Promise.all([context.waitForEvent("page"), links.filter({ hasText: "report.pdf" }).click()]);
  await tab.waitForLoadState();
  assert.ok(received.some((r) => r.path === "/report.pdf"), "the link was followed");

  for (const r of received) {
    assert.equal(r.headers.authorization, undefined, `${r.method} ${r.path} carried Authorization`);
    // The opened tab asks for its own favicon with itself as referrer; the chat page never is.
    assert.ok(!r.headers.referer?.startsWith(broker.url), `${r.method} ${r.path} named the chat page`);
  }
  const toForeign = requests.filter((r) => r.url().startsWith(foreignOrigin));
  assert.ok(toForeign.length > 0);
  for (const request of toForeign) {
    const headers = await request.allHeaders();
    assert.equal(headers.authorization, undefined, `${request.url()} carried Authorization`);
  }
  const toBroker = requests.filter((r) => new URL(r.url()).pathname.startsWith("/api/v1/files/"));
  assert.ok(toBroker.length > 0, "the broker's own image was fetched");
  for (const request of toBroker) {
    assert.ok((await request.allHeaders()).authorization?.startsWith("Bearer "), "with the token");
  }
  await context.close();
});
