// Resume inside STOMP, in the demo client: a page that lost its connection gets what its groups
// and notifications missed on their subscriptions (SUBSCRIBE with since-seq, MESSAGE frames
// marked replay:true), and what its private chats missed on /user/queue/messages (SUBSCRIBE with
// since-position, the highest inbox position the page was pushed), not over REST. Bob's
// WebSocket goes through a Playwright route, so the test can cut it, keep it down while alice
// and the backend send over REST, and read the STOMP frames both ways. The broker replays at
// most 5 messages here, so a longer outage shows the page paging in the rest itself (event
// replay.truncated); with positions turned off, the private chats catch up over REST as before.
// Screenshots of every step go to web/test-output/.
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { Broker, freePort } from "./broker.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const binary = process.env.WEB_TEST_BROKER;
const webDir = resolve(process.env.WEB_TEST_WEB_DIR ?? join(here, "..", "dist"));
const output = resolve(process.env.WEB_TEST_OUTPUT ?? join(here, "..", "test-output"));
const chromiumPath = process.env.WEB_TEST_CHROMIUM ?? "/usr/bin/chromium";
const WAIT = 15_000;
const MAX_REPLAY = 5;

assert.ok(binary, "WEB_TEST_BROKER must name the broker binary (tests/run.sh sets it)");
mkdirSync(output, { recursive: true });

let broker;
let browser;
let bob;
let shot = 0;
const tokens = new Map();

async function screenshot(name) {
  shot += 1;
  await bob.screenshot({ path: join(output, `resume-${String(shot).padStart(2, "0")}-${name}-bob.png`) });
}

function online(page) {
  return page.locator('.status[data-state="online"]').waitFor({ timeout: WAIT });
}

function conversationItem(page, title) {
  return page.locator(".conversation", { has: page.locator(".title", { hasText: new RegExp(`^${title}$`) }) });
}

async function open(page, title) {
  await conversationItem(page, title).getByRole("button").click();
  await page.locator(".chat-title h2", { hasText: title }).waitFor({ timeout: WAIT });
}

function bubble(page, text) {
  return page.locator(".msg", { hasText: text });
}

async function seen(page, text) {
  await bubble(page, text).first().waitFor({ timeout: WAIT });
}

async function until(what, check) {
  const deadline = Date.now() + WAIT;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

// A REST call as `user` (role system for "backend"); the answer's JSON.
async function rest(user, method, path, body) {
  if (!tokens.has(user)) {
    const minted = await fetch(`${broker.url}/api/v1/dev/token`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sub: user, roles: user === "backend" ? ["system"] : [] }),
    });
    tokens.set(user, (await minted.json()).token);
  }
  const response = await fetch(`${broker.url}/api/v1${path}`, {
    method,
    headers: { Authorization: `Bearer ${tokens.get(user)}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  assert.ok(response.ok, `${method} ${path}: ${response.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

let group;
let chat;
const say = (content, to = { conversationId: group }) => rest("alice", "POST", "/messages", { ...to, clientMsgId: content, content });
const notify = (title) => rest("backend", "POST", "/notifications", { userIds: ["bob"], title, content: "details" });

// The page's WebSocket, through Playwright: forwarded both ways and recorded, until cut. While
// down, every attempt to connect is closed at once (the page keeps retrying).
const wire = { down: false, route: null, sent: [], received: [] };

async function cut() {
  wire.down = true;
  await wire.route.close();
  await bob.locator('.status:not([data-state="online"])').waitFor({ timeout: WAIT });
}

// The STOMP frames in what went over the wire since `from`.
function frames(list, from) {
  return list
    .slice(from)
    .flatMap((text) => text.split("\0"))
    .map((text) => text.replace(/^[\r\n]+/, ""))
    .filter(Boolean)
    .map((text) => {
      const end = text.indexOf("\n\n");
      const [command, ...lines] = text.slice(0, end).split("\n");
      const headers = Object.fromEntries(lines.map((line) => [line.slice(0, line.indexOf(":")), line.slice(line.indexOf(":") + 1)]));
      return { command, headers, body: text.slice(end + 2) };
    });
}

// The highest inbox position (header `position`, only on /user/queue/messages) pushed to the page.
function highestPosition() {
  const positions = frames(wire.received, 0)
    .filter((f) => f.command === "MESSAGE" && f.headers.position !== undefined)
    .map((f) => Number(f.headers.position));
  const highest = Math.max(...positions);
  assert.ok(Number.isSafeInteger(highest), `a position was pushed: ${positions}`);
  return highest;
}

// The SUBSCRIBE frames the page sent since `from`, by destination.
function subscribes(from) {
  const sent = frames(wire.sent, from).filter((f) => f.command === "SUBSCRIBE");
  return (destination) => sent.find((f) => f.headers.destination === destination)?.headers ?? {};
}

// The last seq of a conversation as `user` sees it.
async function lastSeq(user, id) {
  return (await rest(user, "GET", `/conversations/${id}/messages?limit=1`)).items[0].seq;
}

// The REST requests for a conversation's messages since `from`.
const requests = [];
function historyRequests(id, from) {
  return requests
    .slice(from)
    .map((url) => new URL(url))
    .filter((url) => url.pathname === `/api/v1/conversations/${id}/messages`);
}

// The bubbles of the open chat: [seq, text] in page order.
function bubbles(page) {
  return page.locator(".msg[data-seq]").evaluateAll((nodes) => nodes.map((n) => [Number(n.dataset.seq), n.querySelector(".text")?.textContent ?? ""]));
}

async function lastSeqShown(page) {
  return Math.max(...(await bubbles(page)).map(([seq]) => seq));
}

function inOrderOnce(shown, texts) {
  const seqs = shown.map(([seq]) => seq);
  assert.deepEqual(seqs, [...new Set(seqs)].sort((a, b) => a - b), `in seq order, none twice: ${seqs}`);
  const mine = shown.map(([, text]) => text).filter((text) => texts.includes(text));
  assert.deepEqual(mine, texts, "each once, in order");
}

before(async () => {
  broker = new Broker({ binary, webDir, port: await freePort(), env: { BROKER_LIMITS_MAX_REPLAY: String(MAX_REPLAY) } });
  await broker.start();
  browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
  });
});

after(async () => {
  await browser?.close();
  if (broker) {
    if (process.exitCode) console.error(broker.tail());
    await broker.dispose();
  }
});

test("resume inside STOMP after a lost connection", async (t) => {
  await t.test("bob's page holds a group, a chat with alice and a notification", async () => {
    const context = await browser.newContext({ viewport: { width: 1100, height: 720 } });
    bob = await context.newPage();
    bob.on("pageerror", (error) => console.error(`[bob] page error: ${error.message}`));
    bob.on("request", (request) => requests.push(request.url()));
    await bob.routeWebSocket(/\/ws\/im$/, (ws) => {
      if (wire.down) return ws.close();
      const server = ws.connectToServer();
      wire.route = ws;
      ws.onMessage((message) => {
        wire.sent.push(String(message));
        server.send(message);
      });
      server.onMessage((message) => {
        wire.received.push(String(message));
        ws.send(message);
      });
    });
    await bob.goto(broker.url);
    await bob.getByLabel("User id").fill("bob");
    await bob.getByRole("button", { name: "Try as this user" }).click();
    await online(bob);

    group = (await rest("alice", "POST", "/groups", { name: "resumers", memberIds: ["bob"] })).id;
    for (const n of [1, 2, 3]) await say(`before ${n}`);
    chat = (await say("private before", { to: "bob" })).conversationId;
    await notify("notice 1");

    await open(bob, "alice");
    await seen(bob, "private before");
    await open(bob, "resumers");
    for (const n of [1, 2, 3]) await seen(bob, `before ${n}`);
    await bob.getByRole("button", { name: "Notifications (1)" }).waitFor({ timeout: WAIT });
    // The first connection knew no inbox position: the private chats' queue was subscribed live
    // (the chats were loaded over REST).
    assert.equal(subscribes(0)("/user/queue/messages")["since-position"], undefined);
    await screenshot("before");
  });

  await t.test("cut off, it gets the missed group, private and notification messages replayed, not over REST", async () => {
    const held = await lastSeqShown(bob);
    const notified = await lastSeq("bob", "system_bob");
    const position = highestPosition();
    await cut();
    const marks = { requests: requests.length, sent: wire.sent.length, received: wire.received.length };
    const missed = [1, 2, 3, 4].map((n) => `missed ${n}`);
    for (const text of missed) await say(text);
    await say("private missed", { to: "bob" });
    await notify("notice 2");
    await notify("notice 3");
    await screenshot("offline");

    wire.down = false;
    await online(bob);
    for (const text of missed) await seen(bob, text);
    await bob.getByRole("button", { name: "Notifications (3)" }).waitFor({ timeout: WAIT });
    // resync() ends with the open chat's pins: by then the page has asked for all it catches up.
    await until("the resync", () => requests.slice(marks.requests).some((url) => url.includes(`/conversations/${group}/pins`)));
    inOrderOnce(await bubbles(bob), ["before 1", "before 2", "before 3", ...missed]);

    // The group's topic and the notifications were subscribed again from the seq the page holds,
    // the private chats' queue from the highest inbox position it was pushed.
    const subscribed = subscribes(marks.sent);
    assert.equal(subscribed(`/topic/group.${group}`)["since-seq"], String(held));
    assert.equal(subscribed("/user/queue/notifications")["since-seq"], String(notified));
    assert.equal(subscribed("/user/queue/messages")["since-position"], String(position));
    assert.equal(subscribed("/user/queue/messages")["since-seq"], undefined);

    // What was missed came on those subscriptions, marked replayed, in order and once.
    const replayed = frames(wire.received, marks.received).filter((f) => f.command === "MESSAGE" && f.headers.replay === "true");
    const titles = (event, id) =>
      replayed
        .filter((f) => f.headers.event === event)
        .map((f) => JSON.parse(f.body))
        .filter((m) => id === undefined || m.conversationId === id)
        .map((m) => m.attachment?.title ?? m.content.split("\n")[0]);
    assert.deepEqual(titles("message.new", group), missed);
    assert.deepEqual(titles("message.new", chat), ["private missed"]);
    assert.deepEqual(titles("notification.new"), ["notice 2", "notice 3"]);
    const privately = replayed.filter((f) => f.headers.event === "message.new" && JSON.parse(f.body).conversationId === chat);
    assert.ok(privately.every((f) => Number(f.headers.position) > position), "replayed above the position the page named");

    // Not over REST: no history page of the group, the private chat or the notifications since
    // the cut.
    assert.deepEqual(historyRequests(group, marks.requests).map(String), [], "no group history over REST");
    assert.deepEqual(historyRequests(chat, marks.requests).map(String), [], "no private history over REST");
    assert.deepEqual(historyRequests("system_bob", marks.requests).map(String), [], "no notification history over REST");
    await screenshot("resumed");

    await bob.getByRole("button", { name: "Notifications (3)" }).click();
    const notices = await bob.locator(".panel .notifications li strong").allTextContents();
    assert.deepEqual(notices, ["notice 3", "notice 2", "notice 1"]);
    await screenshot("notifications");
    await bob.getByRole("button", { name: "Close panel" }).click();

    await open(bob, "alice");
    await seen(bob, "private missed");
    assert.equal(await bubble(bob, "private missed").count(), 1);
  });

  await t.test("live messages follow the replay without a repeat", async () => {
    await open(bob, "resumers");
    await say("live after");
    await seen(bob, "live after");
    inOrderOnce(await bubbles(bob), ["before 1", "before 2", "before 3", "missed 1", "missed 2", "missed 3", "missed 4", "live after"]);
  });

  await t.test("after a longer outage the newest are replayed and the page pages in the rest", async () => {
    const held = await lastSeqShown(bob);
    const notified = await lastSeq("bob", "system_bob");
    const heldPrivate = await lastSeq("bob", chat);
    // Also the replayed "private missed" counts.
    const position = highestPosition();
    await cut();
    const marks = { requests: requests.length, sent: wire.sent.length, received: wire.received.length };
    const burst = [1, 2, 3, 4, 5, 6, 7, 8].map((n) => `burst ${n}`);
    for (const text of burst) await say(text);
    const privateBurst = [1, 2, 3, 4, 5, 6, 7].map((n) => `private burst ${n}`);
    for (const text of privateBurst) await say(text, { to: "bob" });
    const notices = [4, 5, 6, 7, 8, 9].map((n) => `notice ${n}`);
    for (const title of notices) await notify(title);

    wire.down = false;
    await online(bob);
    for (const text of burst) await seen(bob, text);
    await bob.getByRole("button", { name: "Notifications (6)" }).waitFor({ timeout: WAIT });
    inOrderOnce(await bubbles(bob), ["missed 4", "live after", ...burst]);
    assert.equal(subscribes(marks.sent)("/user/queue/messages")["since-position"], String(position));

    const received = frames(wire.received, marks.received).filter((f) => f.command === "MESSAGE");
    const byId = (a, b) => a.conversationId.localeCompare(b.conversationId);
    const truncated = received
      .filter((f) => f.headers.event === "replay.truncated")
      .map((f) => JSON.parse(f.body))
      .sort(byId);
    const from = held + burst.length - MAX_REPLAY + 1;
    const privateFrom = heldPrivate + privateBurst.length - MAX_REPLAY + 1;
    const noticesFrom = notified + notices.length - MAX_REPLAY + 1;
    assert.deepEqual(
      truncated,
      [
        { conversationId: group, afterSeq: held, beforeSeq: from },
        { conversationId: chat, afterSeq: heldPrivate, beforeSeq: privateFrom },
        { conversationId: "system_bob", afterSeq: notified, beforeSeq: noticesFrom },
      ].sort(byId),
    );
    const replayed = (id) =>
      received
        .filter((f) => f.headers.event === "message.new" && f.headers.replay === "true")
        .map((f) => JSON.parse(f.body))
        .filter((m) => m.conversationId === id)
        .map((m) => m.content);
    assert.deepEqual(replayed(group), burst.slice(-MAX_REPLAY));
    assert.deepEqual(replayed(chat), privateBurst.slice(-MAX_REPLAY));
    // Exactly the range the broker named, over REST.
    const ranges = (id) =>
      historyRequests(id, marks.requests)
        .filter((url) => url.searchParams.has("afterSeq"))
        .map((url) => [url.searchParams.get("afterSeq"), url.searchParams.get("beforeSeq")]);
    assert.deepEqual(ranges(group), [[String(held), String(from)]]);
    assert.deepEqual(ranges("system_bob"), [[String(notified), String(noticesFrom)]]);
    await screenshot("truncated");

    // The private chat's paged messages take their place below the replayed ones.
    await open(bob, "alice");
    for (const text of privateBurst) await seen(bob, text);
    inOrderOnce(await bubbles(bob), ["private before", "private missed", ...privateBurst]);
    assert.deepEqual(ranges(chat), [[String(heldPrivate), String(privateFrom)]]);
    await screenshot("truncated-private");

    // The paged notifications take their place below the replayed ones.
    await bob.getByRole("button", { name: "Notifications (6)" }).click();
    const shown = await bob.locator(".panel .notifications li strong").allTextContents();
    assert.deepEqual(shown, [9, 8, 7, 6, 5, 4, 3, 2, 1].map((n) => `notice ${n}`));
    await bob.getByRole("button", { name: "Close panel" }).click();
  });

  await t.test("with positions turned off, the private chats catch up over REST", async () => {
    await open(bob, "alice");
    const heldPrivate = await lastSeq("bob", chat);
    const position = highestPosition();
    await cut();
    const marks = { requests: requests.length, sent: wire.sent.length, received: wire.received.length };
    broker.extraEnv.BROKER_IM_PRIVATE_RESUME = "false";
    await broker.restart();
    await say("private while off", { to: "bob" });

    wire.down = false;
    await online(bob);
    await seen(bob, "private while off");
    // The page still named its position; the broker could not replay and said so once, without a
    // conversation; the page paged the loaded private chat from the seq it held.
    assert.equal(subscribes(marks.sent)("/user/queue/messages")["since-position"], String(position));
    const truncated = frames(wire.received, marks.received)
      .filter((f) => f.command === "MESSAGE" && f.headers.event === "replay.truncated")
      .map((f) => JSON.parse(f.body));
    assert.deepEqual(truncated, [{ conversationId: null, afterSeq: null, beforeSeq: null }]);
    assert.deepEqual(
      historyRequests(chat, marks.requests).map((url) => [url.searchParams.get("afterSeq"), url.searchParams.get("beforeSeq")]),
      [[String(heldPrivate), null]],
    );

    // Live again, without positions.
    await say("private live while off", { to: "bob" });
    await seen(bob, "private live while off");
    const live = frames(wire.received, marks.received).filter((f) => f.command === "MESSAGE" && f.headers.event === "message.new");
    assert.ok(live.length > 0 && live.every((f) => f.headers.position === undefined), "no position header");
    inOrderOnce(await bubbles(bob), ["private burst 7", "private while off", "private live while off"]);
    await screenshot("positions-off");
  });
});
