// Edits, reactions, pins and mentions in the demo client, in headless Chromium against a real
// broker: alice and bob, each on a desktop-sized page, use them through the page itself and see
// each other's changes live (and after a reload, from the broker's history). Screenshots of every
// step go to web/test-output/.
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
    await page.screenshot({ path: join(output, `features-${prefix}-${name}-${user}.png`) });
  }
}

async function signIn(user) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 720 } });
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

// A stored message (not the optimistic copy): only those have an id to edit, react to or pin.
function bubble(page, text) {
  return page.locator(".msg:not(.pending)", { hasText: text });
}

// Shows a message's actions (they appear on hover) and clicks one.
async function act(page, text, action) {
  const message = bubble(page, text);
  await message.waitFor({ timeout: WAIT });
  await message.hover();
  await message.getByRole("button", { name: action, exact: true }).click();
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

test("edits, reactions, pins and mentions", async (t) => {
  await t.test("alice and bob sign in and chat", async () => {
    const alice = await signIn("alice");
    const bob = await signIn("bob");
    await alice.getByRole("button", { name: "New chat" }).click();
    await alice.getByLabel("User id").fill("bob");
    await alice.getByRole("button", { name: "Start chat" }).click();
    await alice.locator(".chat-title h2", { hasText: "bob" }).waitFor({ timeout: WAIT });
    await say(alice, "see you at 5");
    await bubble(alice, "see you at 5").waitFor({ timeout: WAIT });
    await conversationItem(bob, "alice").waitFor({ timeout: WAIT });
    await open(bob, "alice");
    await bubble(bob, "see you at 5").waitFor({ timeout: WAIT });
    await screenshot("chat");
  });

  await t.test("alice edits her message: bob sees the new text, marked edited", async () => {
    const { alice, bob } = pages;
    await act(alice, "see you at 5", "Edit");
    const box = alice.getByRole("textbox", { name: "Message" });
    assert.equal(await box.inputValue(), "see you at 5", "the composer holds the text to edit");
    await alice.locator(".edit-bar", { hasText: "Editing" }).waitFor();
    await box.fill("see you at 6");
    await box.press("Enter");

    for (const page of [bob, alice]) {
      await bubble(page, "see you at 6").locator(".edited", { hasText: "(edited)" }).waitFor({ timeout: WAIT });
      assert.equal(await bubble(page, "see you at 5").count(), 0, "the old text is gone");
    }
    // An edit replaces the text; it sends nothing new.
    assert.equal(await bob.locator(".msg").count(), 1);
    await conversationItem(bob, "alice").locator(".preview", { hasText: "see you at 6" }).waitFor({ timeout: WAIT });
    await screenshot("edited");

    // After a reload the history says so too (editedAt).
    await bob.reload();
    await online(bob);
    await open(bob, "alice");
    await bubble(bob, "see you at 6").locator(".edited").waitFor({ timeout: WAIT });
  });

  await t.test("bob reacts 👍: alice sees the chip with its count, bob's is highlighted", async () => {
    const { alice, bob } = pages;
    await act(bob, "see you at 6", "React with 👍");
    const aliceChip = bubble(alice, "see you at 6").locator(".reaction", { hasText: "👍 1" });
    const bobChip = bubble(bob, "see you at 6").locator(".reaction", { hasText: "👍 1" });
    await aliceChip.waitFor({ timeout: WAIT });
    await bobChip.and(bob.locator('.reaction.mine[aria-pressed="true"]')).waitFor({ timeout: WAIT });
    assert.equal(await aliceChip.getAttribute("aria-pressed"), "false", "not alice's reaction");
    assert.doesNotMatch(await aliceChip.getAttribute("class"), /\bmine\b/);
    await screenshot("reacted");

    // Alice joins in from the chip: two, hers highlighted on her page only.
    await aliceChip.click();
    await bubble(alice, "see you at 6").locator('.reaction.mine[aria-pressed="true"]', { hasText: "👍 2" }).waitFor({ timeout: WAIT });
    await bubble(bob, "see you at 6").locator('.reaction.mine[aria-pressed="true"]', { hasText: "👍 2" }).waitFor({ timeout: WAIT });

    // Bob clicks his chip: his reaction is taken back, on both pages.
    await bubble(bob, "see you at 6").locator(".reaction", { hasText: "👍 2" }).click();
    await bubble(bob, "see you at 6").locator('.reaction[aria-pressed="false"]', { hasText: "👍 1" }).waitFor({ timeout: WAIT });
    await bubble(alice, "see you at 6").locator('.reaction.mine[aria-pressed="true"]', { hasText: "👍 1" }).waitFor({ timeout: WAIT });

    // A reload draws the counts from the history, with "me" as the broker sees it.
    await alice.reload();
    await online(alice);
    await open(alice, "bob");
    await bubble(alice, "see you at 6").locator('.reaction.mine[aria-pressed="true"]', { hasText: "👍 1" }).waitFor({ timeout: WAIT });
    await screenshot("reactions");
  });

  await t.test("alice pins a message: both pages show it in the pinned bar", async () => {
    const { alice, bob } = pages;
    await say(bob, "the address is 12 Elm Street");
    await bubble(alice, "12 Elm Street").waitFor({ timeout: WAIT });
    await act(alice, "12 Elm Street", "Pin message");
    for (const page of [alice, bob]) {
      await page.locator(".pinned-bar .pinned-item", { hasText: "bob: the address is 12 Elm Street" }).waitFor({ timeout: WAIT });
      await bubble(page, "12 Elm Street").locator(".pinned-mark").waitFor({ timeout: WAIT });
    }
    await screenshot("pinned");

    // The pins of a chat come from the broker when it is opened.
    await bob.reload();
    await online(bob);
    await open(bob, "alice");
    await bob.locator(".pinned-bar .pinned-item", { hasText: "12 Elm Street" }).waitFor({ timeout: WAIT });

    // Either user of a private chat may unpin, from the bar.
    await bob.locator(".pinned-bar").getByRole("button", { name: /^Unpin / }).click();
    for (const page of [alice, bob]) {
      await page.locator(".pinned-bar .pinned-item").waitFor({ state: "detached", timeout: WAIT });
      assert.equal(await page.locator(".pinned-bar").isHidden(), true, "no bar without pins");
    }
    await screenshot("unpinned");
  });

  await t.test("in a group, alice mentions @bob: bob's list shows the @ badge", async () => {
    const { alice, bob } = pages;
    await alice.getByRole("button", { name: "New group" }).click();
    await alice.getByLabel("Name").fill("plans");
    await alice.getByLabel("Members (user ids, comma separated)").fill("bob, carol");
    await alice.getByRole("button", { name: "Create group" }).click();
    await alice.locator(".chat-title h2", { hasText: "plans" }).waitFor({ timeout: WAIT });
    // The page knows the members (a mention names members only) once the group panel lists them.
    await alice.getByRole("button", { name: "Group", exact: true }).click();
    await alice.locator('.member[data-user-id="bob"]').waitFor({ timeout: WAIT });
    await alice.getByRole("button", { name: "Close panel" }).click();
    await conversationItem(bob, "plans").waitFor({ timeout: WAIT });

    // Bob is in his chat with alice, not in the group.
    await say(alice, "@bob can you bring the map?");
    await bubble(alice, "can you bring the map?").waitFor({ timeout: WAIT });
    const badge = conversationItem(bob, "plans").locator(".mention-badge", { hasText: "@" });
    await badge.waitFor({ timeout: WAIT });
    assert.equal(await conversationItem(bob, "alice").locator(".mention-badge").count(), 0);
    assert.equal(await conversationItem(alice, "plans").locator(".mention-badge").count(), 0, "not for the sender");
    await screenshot("mention-badge");

    // The broker's list says so too (`mentioned`).
    await bob.reload();
    await online(bob);
    await badge.waitFor({ timeout: WAIT });

    // Opening the group reads the mention: the message is highlighted for bob, the badge goes.
    await open(bob, "plans");
    await bob.locator(".msg.mentioned", { hasText: "can you bring the map?" }).waitFor({ timeout: WAIT });
    await badge.waitFor({ state: "detached", timeout: WAIT });
    assert.equal(await alice.locator(".msg.mentioned").count(), 0, "alice's own message is not highlighted for her");

    // The owner may mention everybody; a member may not pin in a group.
    await say(alice, "@all dinner at 8");
    await bob.locator(".msg.mentioned", { hasText: "dinner at 8" }).waitFor({ timeout: WAIT });
    const mentioned = bubble(bob, "dinner at 8");
    await mentioned.hover();
    await mentioned.getByRole("button", { name: "Reply" }).waitFor();
    assert.equal(await mentioned.getByRole("button", { name: "Pin message" }).count(), 0);
    await screenshot("mentions");
  });
});
