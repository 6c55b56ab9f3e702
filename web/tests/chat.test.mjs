// The demo client in headless Chromium against a real broker: three users (alice and bob on
// desktop-sized pages, carol at phone width) chat through the page itself. Screenshots of every
// step go to web/test-output/.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync } from "node:fs";
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
const pages = {};
let shot = 0;

async function screenshot(name) {
  shot += 1;
  const prefix = String(shot).padStart(2, "0");
  for (const [user, page] of Object.entries(pages)) {
    await page.screenshot({ path: join(output, `${prefix}-${name}-${user}.png`) });
  }
}

async function signIn(user, viewport) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.on("pageerror", (error) => console.error(`[${user}] page error: ${error.message}`));
  await page.goto(broker.url);
  await page.getByLabel("User id").fill(user);
  await page.getByRole("button", { name: "Try as this user" }).click();
  await online(page);
  pages[user] = page;
  return page;
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

async function say(page, text) {
  const box = page.getByRole("textbox", { name: "Message" });
  await box.fill(text);
  await box.press("Enter");
}

function bubble(page, text) {
  return page.locator(".msg", { hasText: text });
}

async function seen(page, text) {
  await bubble(page, text).first().waitFor({ timeout: WAIT });
}

before(async () => {
  broker = new Broker({ binary, webDir, port: await freePort() });
  await broker.start();
  browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
  });
});

after(async () => {
  await browser?.close();
  if (broker) {
    if (process.exitCode) console.error(broker.tail());
    await broker.dispose();
  }
});

test("the demo client", async (t) => {
  await t.test("three users sign in with the dev login", async () => {
    await signIn("alice", { width: 1100, height: 720 });
    await signIn("bob", { width: 1100, height: 720 });
    await signIn("carol", { width: 390, height: 760 });
    await screenshot("signed-in");
  });

  await t.test("a token from `broker token` can be pasted to sign in", async () => {
    // Minted in the broker's directory, with the secret it generated there.
    const token = execFileSync(binary, ["token", "--sub", "erin"], { cwd: broker.dir, env: broker.env() }).toString().trim();
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(broker.url);
    await page.getByLabel("Paste a token").fill(token);
    await page.getByRole("button", { name: "Sign in", exact: true }).click();
    await online(page);
    assert.equal(await page.locator(".me-name").textContent(), "erin");
    await context.close();
  });

  await t.test("private chat both ways, with delivered and read ticks", async () => {
    const { alice, bob } = pages;
    await alice.getByRole("button", { name: "New chat" }).click();
    await alice.getByLabel("User id").fill("bob");
    await alice.getByRole("button", { name: "Start chat" }).click();
    await alice.locator(".chat-title h2", { hasText: "bob" }).waitFor({ timeout: WAIT });
    await say(alice, "hello bob");
    // The optimistic bubble is replaced by the stored one (it gets a seq).
    await alice.locator('.msg.mine[data-seq="1"]', { hasText: "hello bob" }).waitFor({ timeout: WAIT });

    await conversationItem(bob, "alice").locator(".badge", { hasText: "1" }).waitFor({ timeout: WAIT });
    await screenshot("unread-badge");
    await open(bob, "alice");
    await seen(bob, "hello bob");
    await alice.locator('.msg.mine[data-status="read"]', { hasText: "hello bob" }).waitFor({ timeout: WAIT });

    // Typing shows on the other side before the message arrives.
    await bob.getByRole("textbox", { name: "Message" }).pressSequentially("hi alice");
    await alice.locator(".chat-sub.typing", { hasText: "bob is typing" }).waitFor({ timeout: WAIT });
    await say(bob, "hi alice, how are you?");
    await seen(alice, "hi alice, how are you?");
    await bob.locator('.msg.mine[data-status="read"]', { hasText: "hi alice" }).waitFor({ timeout: WAIT });
    // Presence: each sees the other online.
    await alice.locator(".chat-title .dot.online").waitFor({ timeout: WAIT });
    await bob.locator(".chat-title .dot.online").waitFor({ timeout: WAIT });
    assert.equal(await bubble(alice, "hello bob").count(), 1);
    assert.equal(await bubble(bob, "hi alice, how are you?").count(), 1);
    await screenshot("private-chat");
  });

  await t.test("a recalled message shows as recalled on both sides", async () => {
    const { alice, bob } = pages;
    await say(alice, "oops, wrong chat");
    await seen(bob, "oops, wrong chat");
    // Recall needs the stored message (its id), not the optimistic bubble.
    const mine = alice.locator(".msg.mine:not(.pending)", { hasText: "oops, wrong chat" });
    await mine.waitFor({ timeout: WAIT });
    await mine.hover();
    await mine.getByRole("button", { name: "Recall" }).click();
    await alice.locator('.msg.recalled[data-status="recalled"]').waitFor({ timeout: WAIT });
    await bob.locator('.msg.recalled[data-status="recalled"]', { hasText: "Message recalled" }).waitFor({ timeout: WAIT });
    assert.equal(await bubble(bob, "oops, wrong chat").count(), 0);
    assert.equal(await bubble(alice, "oops, wrong chat").count(), 0);
    await screenshot("recalled");
  });

  await t.test("a group of three", async () => {
    const { alice, bob, carol } = pages;
    await alice.getByRole("button", { name: "New group" }).click();
    await alice.getByLabel("Name").fill("trio");
    await alice.getByLabel("Members (user ids, comma separated)").fill("bob, carol");
    await alice.getByRole("button", { name: "Create group" }).click();
    await alice.locator(".chat-title h2", { hasText: "trio" }).waitFor({ timeout: WAIT });
    await say(alice, "welcome to trio");

    await conversationItem(bob, "trio").waitFor({ timeout: WAIT });
    await open(bob, "trio");
    await seen(bob, "welcome to trio");
    await conversationItem(carol, "trio").waitFor({ timeout: WAIT });
    await open(carol, "trio");
    await seen(carol, "welcome to trio");

    await say(bob, "bob here");
    await say(carol, "carol here, on my phone");
    for (const page of [alice, bob, carol]) {
      await seen(page, "bob here");
      await seen(page, "carol here, on my phone");
    }
    // Both read alice's welcome: her message says so, live.
    await alice.locator(".msg.mine", { hasText: "welcome to trio" }).locator(".read-count", { hasText: "Read by 2" }).waitFor({ timeout: WAIT });
    await alice.getByRole("button", { name: "Group", exact: true }).click();
    await alice.locator(".member", { hasText: "carol" }).waitFor({ timeout: WAIT });
    await alice.getByLabel("Announcement").fill("dinner on friday");
    await alice.getByRole("button", { name: "Post announcement" }).click();
    await carol.locator(".announcement", { hasText: "dinner on friday" }).waitFor({ timeout: WAIT });
    await screenshot("group");

    // Invite, promote and remove a fourth user from the group panel.
    await alice.getByLabel("Invite").fill("dave");
    await alice.getByRole("button", { name: "Invite", exact: true }).click();
    const dave = alice.locator('.member[data-user-id="dave"]');
    await dave.waitFor({ timeout: WAIT });
    await alice.locator(".chat-sub", { hasText: "4 members" }).waitFor({ timeout: WAIT });
    await alice.getByLabel("Role of dave").selectOption("admin");
    await dave.locator(".role", { hasText: "admin" }).waitFor({ timeout: WAIT });
    // Mute dave, then let him speak again; set a nickname.
    await alice.getByRole("button", { name: "Mute dave" }).click();
    await dave.locator(".flag", { hasText: "muted" }).waitFor({ timeout: WAIT });
    await alice.getByRole("button", { name: "Unmute dave" }).click();
    await alice.getByRole("button", { name: "Mute dave" }).waitFor({ timeout: WAIT });
    await alice.getByLabel("My nickname here").fill("Ally");
    await alice.getByRole("button", { name: "Set nickname" }).click();
    await alice.locator('.member[data-user-id="alice"]', { hasText: "Ally (alice)" }).waitFor({ timeout: WAIT });
    await alice.getByRole("button", { name: "Remove dave" }).click();
    await dave.waitFor({ state: "detached", timeout: WAIT });
    await carol.locator(".chat-sub", { hasText: "3 members" }).waitFor({ timeout: WAIT });
    await alice.getByRole("button", { name: "Close panel" }).click();

    // Pinned conversations come first.
    await open(alice, "bob");
    await alice.getByRole("button", { name: "Pin", exact: true }).click();
    await alice.locator(".conversation").first().locator(".title", { hasText: "bob" }).waitFor({ timeout: WAIT });
    await alice.locator(".conversation").first().locator(".flag", { hasText: "pinned" }).waitFor();
    await open(alice, "trio");
  });

  await t.test("an image upload reaches the others", async () => {
    const { alice, bob, carol } = pages;
    await alice.locator("#attach").setInputFiles({ name: "gradient.png", mimeType: "image/png", buffer: png(96, 64) });
    await alice.locator(".attachment-bar img.preview-image").waitFor({ timeout: WAIT });
    await alice.getByRole("button", { name: "Send file" }).click();
    for (const page of [bob, carol]) {
      const image = page.locator(".msg.theirs img");
      await image.waitFor({ timeout: WAIT });
      await page.waitForFunction(
        () => [...document.querySelectorAll(".msg.theirs img")].some((i) => i.complete && i.naturalWidth > 0),
        null,
        { timeout: WAIT },
      );
      assert.match(await image.getAttribute("src"), /^blob:/);
    }
    await screenshot("image");
  });

  await t.test("search finds a Chinese phrase, highlighted", async () => {
    const { alice, bob } = pages;
    await open(alice, "bob");
    await open(bob, "alice");
    await say(alice, "今天晚上一起吃饭吗");
    await seen(bob, "今天晚上一起吃饭吗");
    await bob.getByRole("searchbox", { name: "Search messages" }).fill("一起吃饭");
    await bob.getByRole("searchbox", { name: "Search messages" }).press("Enter");
    const hit = bob.locator(".search-results .hit", { hasText: "今天晚上一起吃饭吗" });
    await hit.waitFor({ timeout: WAIT });
    assert.equal(await hit.locator("mark").textContent(), "一起吃饭");
    await screenshot("search");
    await bob.locator(".search-results").getByRole("button", { name: "Close" }).click();
  });

  await t.test("a broker restart during the chat loses nothing and shows every message once", async () => {
    const { alice, bob } = pages;
    await open(bob, "alice");
    await broker.stop();
    for (const page of [alice, bob]) {
      await page.locator('.status:not([data-state="online"])').waitFor({ timeout: WAIT });
    }
    // Typed while the broker is down: shown as pending, sent after the reconnect.
    await say(alice, "sent while the broker was down");
    await alice.locator('.msg.pending[data-status="sending"]', { hasText: "sent while the broker was down" }).waitFor();
    await screenshot("broker-down");

    await broker.start();
    // Sent over REST as soon as the broker is back, likely before the pages have reconnected:
    // the pages must find it when they re-sync by seq.
    const token = await (
      await fetch(`${broker.url}/api/v1/dev/token`, { method: "POST", body: JSON.stringify({ sub: "alice" }), headers: { "Content-Type": "application/json" } })
    ).json();
    const sent = await fetch(`${broker.url}/api/v1/messages`, {
      method: "POST",
      headers: { Authorization: `Bearer ${token.token}`, "Content-Type": "application/json" },
      body: JSON.stringify({ to: "bob", clientMsgId: "rest-during-reconnect", content: "sent during the reconnect" }),
    });
    assert.equal(sent.status, 201);

    for (const page of [alice, bob]) await online(page);
    await say(bob, "back online");
    const texts = [
      "hello bob",
      "hi alice, how are you?",
      "今天晚上一起吃饭吗",
      "sent while the broker was down",
      "sent during the reconnect",
      "back online",
    ];
    for (const page of [alice, bob]) {
      for (const text of texts) await seen(page, text);
      await page.locator(".msg.pending").waitFor({ state: "detached", timeout: WAIT });
      for (const text of texts) assert.equal(await bubble(page, text).count(), 1, `${text} once`);
      const seqs = await page.locator(".msg[data-seq]").evaluateAll((nodes) => nodes.map((n) => Number(n.dataset.seq)));
      assert.equal(new Set(seqs).size, seqs.length, `no seq twice: ${seqs}`);
      assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), "in seq order");
      assert.deepEqual(seqs, Array.from({ length: seqs.length }, (_, i) => i + 1), "no gap");
    }
    await screenshot("after-restart");
  });

  await t.test("refused sends and uploads are shown inline", async () => {
    const { alice } = pages;
    await say(alice, "x".repeat(501));
    await alice.locator(".errors .error-item", { hasText: "CONTENT_TOO_LONG" }).waitFor({ timeout: WAIT });
    await alice.locator('.msg.pending[data-status="failed"]').waitFor({ timeout: WAIT });
    await alice.locator("#attach").setInputFiles({ name: "big.bin", mimeType: "application/octet-stream", buffer: Buffer.alloc(150_000, 7) });
    await alice.getByRole("button", { name: "Send file" }).click();
    await alice.locator(".attachment-error", { hasText: "Too large" }).waitFor({ timeout: WAIT });
    await screenshot("errors");
    await alice.getByRole("button", { name: "Remove attachment" }).click();
    await alice.locator(".msg.pending").getByRole("button", { name: "Discard" }).click();
    await alice.locator(".msg.pending").waitFor({ state: "detached" });
  });

  await t.test("reply and forward", async () => {
    const { alice, bob, carol } = pages;
    const original = bob.locator(".msg", { hasText: "hello bob" });
    await original.hover();
    await original.getByRole("button", { name: "Reply" }).click();
    await bob.locator(".reply-bar", { hasText: "hello bob" }).waitFor();
    await say(bob, "answering your first message");
    await alice.locator(".msg", { hasText: "answering your first message" }).locator(".quote", { hasText: "hello bob" }).waitFor({ timeout: WAIT });

    const mine = alice.locator(".msg", { hasText: "hello bob" }).first();
    await mine.hover();
    await mine.getByRole("button", { name: "Forward" }).click();
    const dialog = alice.locator("dialog");
    await dialog.getByLabel("trio").check();
    await dialog.getByRole("button", { name: "Forward" }).click();
    await carol.locator(".msg", { hasText: "hello bob" }).locator(".forwarded", { hasText: "Forwarded from alice" }).waitFor({ timeout: WAIT });
    await screenshot("reply-forward");
  });

  await t.test("delivered until the reader opens the chat, then read", async () => {
    const { alice, bob } = pages;
    await open(bob, "trio");
    await open(alice, "bob");
    await say(alice, "are you there?");
    const tick = alice.locator(".msg.mine", { hasText: "are you there?" });
    await tick.and(alice.locator('[data-status="delivered"]')).waitFor({ timeout: WAIT });
    assert.equal(await tick.locator(".ticks").getAttribute("aria-label"), "delivered");
    await conversationItem(bob, "alice").locator(".badge", { hasText: "1" }).waitFor({ timeout: WAIT });
    await open(bob, "alice");
    await tick.and(alice.locator('[data-status="read"]')).waitFor({ timeout: WAIT });
    await conversationItem(bob, "alice").locator(".badge").waitFor({ state: "detached", timeout: WAIT });
    await screenshot("delivered-read");
  });

  await t.test("system notifications appear in the notifications pane", async () => {
    const { alice, bob } = pages;
    const system = await (
      await fetch(`${broker.url}/api/v1/dev/token`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ sub: "backend", roles: ["system"] }),
      })
    ).json();
    const sent = await fetch(`${broker.url}/api/v1/notifications`, {
      method: "POST",
      headers: { Authorization: `Bearer ${system.token}`, "Content-Type": "application/json" },
      body: JSON.stringify({ userIds: ["alice"], title: "Order shipped", content: "Your parcel is on its way" }),
    });
    assert.equal(sent.status, 201);
    await alice.getByRole("button", { name: "Notifications (1)" }).click();
    await alice.locator(".panel .notifications li", { hasText: "Order shipped" }).waitFor({ timeout: WAIT });
    await screenshot("notifications");
    await alice.getByRole("button", { name: "Close panel" }).click();

    // An announcement to everyone: pushed live, and found after a reload.
    const announced = await fetch(`${broker.url}/api/v1/announcements`, {
      method: "POST",
      headers: { Authorization: `Bearer ${system.token}`, "Content-Type": "application/json" },
      body: JSON.stringify({ content: "Maintenance tonight at 22:00" }),
    });
    assert.equal(announced.status, 201);
    await alice.getByRole("button", { name: "Notifications (1)" }).click();
    await alice.locator(".announcements li", { hasText: "Maintenance tonight" }).waitFor({ timeout: WAIT });
    await alice.getByRole("button", { name: "Close panel" }).click();
    await bob.reload();
    await online(bob);
    await bob.getByRole("button", { name: /Notifications/ }).click();
    await bob.locator(".announcements li", { hasText: "Maintenance tonight" }).waitFor({ timeout: WAIT });
    await bob.getByRole("button", { name: "Close panel" }).click();
  });

  await t.test("older history pages in on scroll up", async () => {
    const { alice } = pages;
    const token = await (
      await fetch(`${broker.url}/api/v1/dev/token`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ sub: "dave" }),
      })
    ).json();
    for (let i = 0; i < 45; i++) {
      const sent = await fetch(`${broker.url}/api/v1/messages`, {
        method: "POST",
        headers: { Authorization: `Bearer ${token.token}`, "Content-Type": "application/json" },
        body: JSON.stringify({ to: "alice", clientMsgId: `page-${i}`, content: `page test ${i}` }),
      });
      assert.equal(sent.status, 201);
    }
    await conversationItem(alice, "dave").locator(".badge", { hasText: "45" }).waitFor({ timeout: WAIT });
    // A reload starts from nothing (the token stays for the tab): only the latest page loads.
    await alice.reload();
    await online(alice);
    await conversationItem(alice, "dave").locator(".badge", { hasText: "45" }).waitFor({ timeout: WAIT });
    await open(alice, "dave");
    await seen(alice, "page test 44");
    assert.equal(await alice.locator(".msg").count(), 30, "the latest page first");
    await alice.locator(".messages").evaluate((box) => {
      box.scrollTop = 0;
    });
    await seen(alice, "page test 0");
    const texts = await alice.locator(".msg .text").allTextContents();
    assert.deepEqual(texts, Array.from({ length: 45 }, (_, i) => `page test ${i}`));
  });

  await t.test("clearing a chat's history is for the one who clears it; a hidden chat comes back with its next message", async () => {
    const { alice, bob } = pages;
    await open(alice, "bob");
    await seen(alice, "hello bob");
    alice.once("dialog", (dialog) => dialog.accept());
    await alice.getByRole("button", { name: "Clear" }).click();
    await alice.locator(".msg").first().waitFor({ state: "detached", timeout: WAIT });
    assert.equal(await bubble(alice, "hello bob").count(), 0);
    await open(bob, "alice");
    await seen(bob, "hello bob");
    await screenshot("cleared");

    await alice.getByRole("button", { name: "Hide" }).click();
    await conversationItem(alice, "bob").waitFor({ state: "detached", timeout: WAIT });
    // A reload asks the broker for the list: still hidden.
    await alice.reload();
    await online(alice);
    await conversationItem(alice, "dave").waitFor({ timeout: WAIT });
    assert.equal(await conversationItem(alice, "bob").count(), 0);
    await say(bob, "back again");
    await conversationItem(alice, "bob").locator(".preview", { hasText: "back again" }).waitFor({ timeout: WAIT });
    await open(alice, "bob");
    await seen(alice, "back again");
    assert.equal(await bubble(alice, "hello bob").count(), 0, "what was cleared stays cleared");
    await screenshot("hidden-and-back");
  });

  await t.test("a contact request, accepted, shows the new contact online", async () => {
    const { alice, carol } = pages;
    await alice.getByRole("button", { name: "Contacts", exact: true }).click();
    await alice.getByLabel("Add contact").fill("carol");
    await alice.getByPlaceholder("a short note").fill("from the trio group");
    await alice.getByRole("button", { name: "Send request" }).click();
    await alice.locator('.requests.outgoing .request[data-user-id="carol"]').waitFor({ timeout: WAIT });

    // Carol is at phone width: the list, with its tools, is behind the open chat.
    const back = carol.getByRole("button", { name: "Back to conversations" });
    if (await back.isVisible()) await back.click();
    await carol.getByRole("button", { name: "Contacts (1)" }).waitFor({ timeout: WAIT });
    await carol.getByRole("button", { name: "Contacts (1)" }).click();
    await carol.locator(".request", { hasText: "from the trio group" }).waitFor({ timeout: WAIT });
    await carol.getByRole("button", { name: "Accept alice" }).click();
    await carol.locator('.contact[data-user-id="alice"]').waitFor({ timeout: WAIT });
    await alice.locator('.contact[data-user-id="carol"] .dot.online').waitFor({ timeout: WAIT });
    await screenshot("contacts");
    await alice.getByRole("button", { name: "Close panel" }).click();
    await carol.getByRole("button", { name: "Close panel" }).click();
  });
});
