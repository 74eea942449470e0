// The web client end to end, in Debian's headless Chromium, against the local server (real
// Postgres, Redis and the moto S3 emulator). `scripts/test-web.sh` builds and starts everything
// and sets BASE_URL; each step leaves a screenshot in e2e/artifacts/ and passes an axe-core check
// (no serious or critical violation) of the page it ends on.

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const BASE_URL = process.env.BASE_URL ?? "http://localhost:3000";
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const here = dirname(fileURLToPath(import.meta.url));
const ARTIFACTS = process.env.E2E_ARTIFACTS ?? join(here, "artifacts");
const AXE = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

const run = Date.now().toString(36);
const person = {
  name: "Dana Webb",
  email: `e2e-${run}@example.com`,
  password: "correct horse battery staple orbit",
};
const admin = { email: "admin@example.com", password: "admin-dev-password-2024!" };

let browser;
let context;
let page;
let shot = 0;
/** Everything the page logged as an error, the CSP's refusals included. */
const pageErrors = [];
/** The last access token the client sent, read off its requests. */
let lastBearer = null;

async function snap(name) {
  shot += 1;
  await page.screenshot({
    path: join(ARTIFACTS, `${String(shot).padStart(2, "0")}-${name}.png`),
    fullPage: true,
  });
}

/** axe-core over the page as it is now: no serious or critical violation. */
async function accessible(target = page) {
  await target.evaluate(AXE);
  const violations = await target.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const result = await axe.run(document, { resultTypes: ["violations"] });
    return result.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      nodes: v.nodes.map((n) => n.target.join(" ")),
    }));
  });
  const bad = violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  assert.deepEqual(bad, [], `accessibility violations on ${target.url()}`);
}

async function ready(target = page) {
  await target.waitForSelector("body[data-ready='true']");
}

function apiFetch(path, token, init = {}) {
  return fetch(`${BASE_URL}${path}`, {
    ...init,
    headers: { ...(init.headers ?? {}), ...(token ? { authorization: `Bearer ${token}` } : {}) },
  });
}

async function register(email, name, password) {
  const res = await fetch(`${BASE_URL}/api/v1/auth/register`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ email, name, password }),
  });
  assert.equal(res.status, 201, await res.text());
}

async function logIn(email, password) {
  await page.goto(`${BASE_URL}/login`);
  await ready();
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.getByRole("button", { name: "Log out" }).waitFor();
}

describe("the web client", { concurrency: false }, () => {
  before(async () => {
    rmSync(ARTIFACTS, { recursive: true, force: true });
    mkdirSync(ARTIFACTS, { recursive: true });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
    context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1280, height: 900 } });
    page = await context.newPage();
    page.setDefaultTimeout(15_000);
    page.on("console", (msg) => {
      if (msg.type() === "error" && !/status of 40[139]|status of 422/.test(msg.text())) {
        pageErrors.push(msg.text());
      }
    });
    page.on("pageerror", (err) => pageErrors.push(String(err)));
    page.on("request", (req) => {
      const auth = req.headers().authorization;
      if (auth?.startsWith("Bearer ")) lastBearer = auth.slice("Bearer ".length);
    });
  });

  after(async () => {
    await browser?.close();
  });

  it("shows the service status from /health", async () => {
    await page.goto(`${BASE_URL}/status`);
    await ready();
    await page.getByText("All systems are working.").waitFor();
    assert.equal(await page.getByText("Working", { exact: true }).count(), 2);
    await snap("status");
    await accessible();
  });

  it("answers an unknown API path with the API's 404, client routes with index.html, bundles for good", async () => {
    const res = await fetch(`${BASE_URL}/api/v1/nothing-here`);
    assert.equal(res.status, 404);
    assert.match(res.headers.get("content-type"), /application\/problem\+json/);
    const route = await fetch(`${BASE_URL}/some/client/route`);
    assert.equal(route.status, 200);
    assert.match(await route.text(), /<div id="app">/);
    assert.equal(route.headers.get("cache-control"), "no-cache");
    assert.match(route.headers.get("content-security-policy"), /script-src 'self'/);
    const script = (await (await fetch(`${BASE_URL}/`)).text()).match(/src="(\/assets\/[^"]+\.js)"/)?.[1];
    assert.ok(script, "index.html names its hashed bundle");
    const asset = await fetch(`${BASE_URL}${script}`);
    assert.equal(asset.status, 200);
    assert.equal(asset.headers.get("cache-control"), "public, max-age=31536000, immutable");
    assert.equal((await fetch(`${BASE_URL}/assets/missing-0000.js`)).status, 404);
  });

  it("signs up, showing the password rules as one types and the server's verdict by the field", async () => {
    await page.goto(`${BASE_URL}/signup`);
    await ready();
    await accessible();
    await page.getByLabel("Name").fill(person.name);
    await page.getByLabel("Email").fill(person.email);
    await page.getByLabel("Password").fill("dana");
    await page.getByText("At least 12 characters (now 4)").waitFor();
    await page.getByText("• Not your email or name").waitFor();
    await page.getByRole("button", { name: "Create account" }).click();
    const passwordError = page.locator(".field-error").filter({ hasText: "Password must be at least 12 characters" });
    await passwordError.waitFor();
    assert.equal(await page.getByLabel("Password").getAttribute("aria-invalid"), "true");
    await snap("signup-refused");
    await accessible();

    await page.getByLabel("Password").fill(person.password);
    await page.getByText(/✓ At least 12 characters/).waitFor();
    await page.getByRole("button", { name: "Create account" }).click();
    await page.getByText(`Signed in as ${person.name} (${person.email}).`).waitFor();
    await snap("signed-up");
    await accessible();
  });

  it("logs out and back in, showing a wrong password's error", async () => {
    await page.getByRole("button", { name: "Log out" }).click();
    await page.getByRole("heading", { name: "Log in" }).waitFor();
    await page.getByLabel("Email").fill(person.email);
    await page.getByLabel("Password").fill("not the right password at all");
    await page.getByRole("button", { name: "Log in" }).click();
    await page.getByRole("alert").filter({ hasText: /./ }).waitFor();
    const alert = (await page.getByRole("alert").filter({ hasText: /./ }).textContent()) ?? "";
    assert.match(alert, /password/i);
    await snap("login-refused");
    await accessible();

    await page.getByLabel("Password").fill(person.password);
    await page.getByRole("button", { name: "Log in" }).click();
    await page.getByText(`Signed in as ${person.name}`).waitFor();
  });

  it("stays signed in after a reload, through the refresh cookie", async () => {
    const cookies = await context.cookies(BASE_URL + "/api/v1/auth/refresh");
    const refresh = cookies.find((c) => c.name === "refresh_token");
    assert.ok(refresh, "the refresh cookie is kept by the browser");
    assert.equal(refresh.httpOnly, true);
    assert.equal(await page.evaluate(() => document.cookie), "", "no script can read the cookie");

    await page.reload();
    await ready();
    await page.getByText(`Signed in as ${person.name}`).waitFor();
    await page.getByRole("button", { name: "Log out" }).waitFor();
    await snap("after-reload");
  });

  it("renews the access token before it expires", async () => {
    // The server under test issues access tokens for 70 s: the client renews 60 s ahead.
    const before = lastBearer;
    const renewal = await page.waitForResponse((res) => res.url().endsWith("/api/v1/auth/refresh"), {
      timeout: 30_000,
    });
    assert.equal(renewal.status(), 200);
    await page.goto(`${BASE_URL}/profile`);
    await page.getByRole("heading", { name: "Your profile" }).waitFor();
    await page.getByLabel("Name").waitFor();
    assert.notEqual(lastBearer, before, "the profile was read with the renewed token");
  });

  it("edits the profile", async () => {
    await page.goto(`${BASE_URL}/profile`);
    await ready();
    const name = page.getByLabel("Name");
    await name.waitFor();
    assert.equal(await name.inputValue(), person.name);
    await accessible();
    await name.fill("Dana W. Webb");
    await page.getByRole("button", { name: "Save changes" }).click();
    await page.getByText("Your changes are saved.").waitFor();
    await snap("profile-saved");

    // An email change without the current password: the server's 422 lands by that field.
    await page.getByLabel("Email").fill(`e2e-${run}-new@example.com`);
    await page.getByRole("button", { name: "Save changes" }).click();
    await page.locator(".field-error").filter({ hasText: "Current password is required to change the email" }).waitFor();
    assert.equal(await page.getByLabel("Current password").first().getAttribute("aria-invalid"), "true");
    await snap("profile-email-needs-password");
    await accessible();

    await page.reload();
    await ready();
    await page.getByLabel("Name").waitFor();
    assert.equal(await page.getByLabel("Name").inputValue(), "Dana W. Webb");
    assert.equal(await page.getByLabel("Email").inputValue(), person.email);
  });

  it("uploads a file with a progress bar, downloads the same bytes, and deletes it", async () => {
    await page.goto(`${BASE_URL}/uploads`);
    await ready();
    await page.getByText(/Allowed types: .*text\/plain.*Up to 10\.0 MB/).waitFor();
    await page.getByText("No files yet.").waitFor();
    await accessible();

    const bytes = Buffer.from(`notes of ${run}\n${"0123456789abcdef".repeat(4096)}\n`);
    await page.getByLabel("File", { exact: true }).setInputFiles({ name: "notes.txt", mimeType: "text/plain", buffer: bytes });
    const put = page.waitForRequest((req) => req.method() === "PUT" && !req.url().startsWith(BASE_URL));
    await page.getByRole("button", { name: "Upload" }).click();
    const direct = await put;
    assert.match(direct.url(), /X-Amz-Signature=/, "the file goes straight to the presigned URL");
    await page.getByText("notes.txt is uploaded.").waitFor();
    const item = page.locator("li[data-upload-id]").filter({ hasText: "notes.txt" });
    await item.waitFor();
    await snap("uploaded");

    const download = page.waitForEvent("download");
    await page.getByRole("button", { name: "Download notes.txt" }).click();
    const saved = await download;
    assert.equal(saved.suggestedFilename(), "notes.txt");
    const back = readFileSync(await saved.path());
    assert.ok(back.equals(bytes), "the downloaded file has the uploaded bytes");

    page.once("dialog", (dialog) => void dialog.accept());
    await page.getByRole("button", { name: "Delete notes.txt" }).click();
    await page.getByText("notes.txt was deleted.").waitFor();
    await page.getByText("No files yet.").waitFor();
    await snap("deleted");
    await page.reload();
    await ready();
    await page.getByText("No files yet.").waitFor();
  });

  it("refuses a type the deployment does not take, by the file field", async () => {
    await page.getByLabel("File", { exact: true }).setInputFiles({
      name: "tool.exe",
      mimeType: "application/x-msdownload",
      buffer: Buffer.from("MZ"),
    });
    await page.getByRole("button", { name: "Upload" }).click();
    await page.locator(".field-error").filter({ hasText: /File type must be one of/ }).waitFor();
    await snap("upload-refused");
    await accessible();
  });

  it("logs out, after which the API refuses the old access token", async () => {
    const token = lastBearer;
    assert.ok(token);
    assert.equal((await apiFetch("/api/v1/users/me", token)).status, 200);
    await page.getByRole("button", { name: "Log out" }).click();
    await page.getByRole("heading", { name: "Log in" }).waitFor();
    assert.equal((await apiFetch("/api/v1/users/me", token)).status, 401);
    await page.reload();
    await ready();
    await page.getByRole("link", { name: "Log in" }).waitFor();
    assert.equal(await page.getByRole("button", { name: "Log out" }).count(), 0);
    await snap("logged-out");

    await page.goto(`${BASE_URL}/profile`);
    await ready();
    await page.getByRole("heading", { name: "Log in" }).waitFor();
    assert.match(page.url(), /\/login\?next=%2Fprofile$/);
  });

  it("lists users for an admin, filtered by email, a page at a time", async () => {
    // Eleven more accounts under this run's prefix: with the one signed up above, two pages.
    for (let i = 0; i < 11; i += 1) {
      await register(`e2e-${run}-${String(i).padStart(2, "0")}@example.com`, `Page User ${i}`, `${person.password} ${i}`);
    }
    await logIn(admin.email, admin.password);
    await page.getByRole("link", { name: "Users" }).first().click();
    await page.getByRole("heading", { name: "Users" }).waitFor();
    await page.getByRole("cell", { name: "admin@example.com" }).waitFor();
    await accessible();

    await page.getByLabel("Email starts with").fill(`e2e-${run}`);
    await page.getByRole("button", { name: "Filter" }).click();
    await page.getByText("Page 1: 10 users.").waitFor();
    assert.equal(await page.locator("tbody tr").count(), 10);
    await snap("admin-page-1");
    await page.getByRole("button", { name: "Next page" }).click();
    await page.getByText("Page 2: 2 users.").waitFor();
    const emails = await page.locator("tbody tr td:first-child").allTextContents();
    assert.equal(emails.length, 2);
    for (const email of emails) assert.ok(email.startsWith(`e2e-${run}`), email);
    assert.equal(await page.getByRole("button", { name: "Next page" }).isDisabled(), true);
    await snap("admin-page-2");
    await accessible();
  });

  it("logs in with the keyboard alone, the skip link first", async () => {
    await page.getByRole("button", { name: "Log out" }).click();
    await page.getByRole("heading", { name: "Log in" }).waitFor();
    await page.goto(`${BASE_URL}/login`);
    await ready();
    await page.keyboard.press("Tab");
    assert.equal(await page.evaluate(() => document.activeElement?.textContent), "Skip to content");
    await page.keyboard.press("Enter");
    const focusedLabel = () =>
      page.evaluate(() => {
        const el = document.activeElement;
        return el instanceof HTMLInputElement ? (el.labels?.[0]?.textContent ?? "") : (el?.textContent ?? "");
      });
    for (let i = 0; i < 10 && (await focusedLabel()) !== "Email"; i += 1) await page.keyboard.press("Tab");
    assert.equal(await focusedLabel(), "Email", "Tab reaches the email field after the skip link");
    await page.keyboard.type(person.email);
    await page.keyboard.press("Tab");
    assert.equal(await focusedLabel(), "Password");
    await page.keyboard.type(person.password);
    await page.keyboard.press("Enter");
    await page.getByText(`Signed in as`).waitFor();
  });

  it("keeps an ordinary user off the admin page", async () => {
    await page.goto(`${BASE_URL}/admin/users`);
    await ready();
    await page.getByRole("heading", { name: "Not allowed" }).waitFor();
  });

  it("fits a phone screen", async () => {
    const phone = await browser.newContext({ viewport: { width: 375, height: 740 }, isMobile: true, hasTouch: true });
    const small = await phone.newPage();
    try {
      for (const path of ["/", "/signup", "/login", "/status"]) {
        await small.goto(`${BASE_URL}${path}`);
        await ready(small);
        const overflow = await small.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
        assert.ok(overflow <= 0, `${path} scrolls sideways by ${overflow}px on a phone`);
        await small.screenshot({ path: join(ARTIFACTS, `phone-${path.slice(1) || "home"}.png`), fullPage: true });
        await accessible(small);
      }
    } finally {
      await phone.close();
    }
  });

  it("changes the password, which ends the session: the new one logs in, the old one no more", async () => {
    await page.goto(`${BASE_URL}/profile`);
    await ready();
    const form = page.locator("form").filter({ hasText: "Change password" });
    const next = "violet canyon drifts forty seven";
    await form.getByLabel("Current password").fill(person.password);
    await form.getByLabel("New password").fill(next);
    await form.getByRole("button", { name: "Change password" }).click();
    await page.getByText("Your password is changed. Log in with the new one.").waitFor();
    assert.equal(new URL(page.url()).pathname, "/login");
    const old = await fetch(`${BASE_URL}/api/v1/auth/login`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ email: person.email, password: person.password }),
    });
    assert.equal(old.status, 401);
    person.password = next;
    await logIn(person.email, person.password);
    await snap("password-changed");
  });

  it("deletes the account", async () => {
    await page.goto(`${BASE_URL}/profile`);
    await ready();
    const form = page.locator("form").filter({ hasText: "Delete your account" });
    await form.getByLabel("Current password").fill(person.password);
    await form.getByRole("button", { name: "Delete my account" }).click();
    await page.getByRole("link", { name: "Create an account" }).waitFor();
    const res = await fetch(`${BASE_URL}/api/v1/auth/login`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ email: person.email, password: person.password }),
    });
    assert.equal(res.status, 401);
    await snap("account-deleted");
  });

  it("renders the API reference at /api/docs with every operation of the document", async () => {
    const doc = await (await fetch(`${BASE_URL}/api/v1/openapi.json`)).json();
    const operations = Object.values(doc.paths).flatMap((item) =>
      Object.keys(item).filter((key) =>
        ["get", "put", "post", "delete", "patch", "head", "options"].includes(key),
      ),
    );
    await page.goto(`${BASE_URL}/api/docs`);
    await page.locator(".opblock").first().waitFor();
    assert.equal(await page.locator(".opblock").count(), operations.length);
    await page.locator(".opblock-summary-path", { hasText: "/api/v1/users/me" }).first().waitFor();
    // The base layout: no top bar offering to explore another document.
    assert.equal(await page.locator(".topbar").count(), 0);
    await snap("api-reference");
  });

  it("ran every page within its Content-Security-Policy, with no script error", () => {
    assert.deepEqual(pageErrors, []);
  });
});
