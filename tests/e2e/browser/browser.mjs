// Drives headless Chromium (playwright-core, the system's /usr/bin/chromium) through the
// flyteauth console. Called by the pytest suite (tests/e2e/python/browser.py).
//
// Usage: node browser.mjs '<json>'   with
//   {
//     "base": "http://127.0.0.1:PORT",          flyteauth's public URL
//     "storageIn": "/path/state.json",          optional: cookies from an earlier run
//     "storageOut": "/path/state.json",         optional: cookies saved at the end
//     "timeoutMs": 60000,                       whole run (the watchdog exits with code 3)
//     "steps": [ {"do": "open"}, ... ]          see STEPS below
//   }
// Prints ONE JSON line on stdout: {"ok": true, "results": [...one per step...]} (exit 0), or
// {"ok": false, "step": i, "error": "...", "url": ..., "text": <page text>, "console": [...],
//  "results": [...]} (exit 1). Diagnostics (page console, failed requests) are collected in
// "console".

import { existsSync } from "node:fs";
import http from "node:http";

import { chromium } from "playwright-core";

const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-dev-shm-usage",
  "--disable-background-networking",
  "--disable-component-update",
  "--no-first-run",
];
const STEP_TIMEOUT_MS = 15_000;

const opts = JSON.parse(process.argv[2] ?? "{}");
const base = opts.base?.replace(/\/$/, "");
if (!base || !Array.isArray(opts.steps)) {
  console.error("browser.mjs: need {\"base\": ..., \"steps\": [...]}");
  process.exit(2);
}
if (!existsSync(CHROMIUM)) {
  console.log(JSON.stringify({ ok: false, error: `Chromium not found at ${CHROMIUM} (apt-get install -y chromium)` }));
  process.exit(1);
}

const diagnostics = [];
const results = [];
let browser;

const watchdog = setTimeout(() => {
  console.log(JSON.stringify({
    ok: false, step: results.length, error: `browser run exceeded ${opts.timeoutMs ?? 60000} ms`,
    console: diagnostics.slice(-50), results,
  }));
  process.exit(3);
}, opts.timeoutMs ?? 60_000);

// --------------------------------------------------------------------------- page helpers

/** Waits until the console has settled (#app[data-state]) and reads what it shows. */
async function snapshot(page) {
  await page.waitForSelector("#app[data-state]", { state: "attached", timeout: STEP_TIMEOUT_MS });
  const state = await page.getAttribute("#app", "data-state");
  if (state === "signed-in") {
    // The projects list is filled by a second call; wait for it (or for an error).
    await page.waitForFunction(
      () => document.querySelector("#projects[data-loaded]") || document.querySelector("#error:not([hidden])"),
      null,
      { timeout: STEP_TIMEOUT_MS },
    );
    // The roles (GET /me) arrive separately too.
    await page.waitForFunction(() => document.querySelector("#app[data-roles]"), null, { timeout: STEP_TIMEOUT_MS });
  }
  return page.evaluate(() => {
    const text = (sel) => document.querySelector(sel)?.textContent ?? null;
    const err = document.querySelector("#error");
    return {
      url: location.href,
      state: document.querySelector("#app")?.dataset.state ?? null,
      userName: text("#user-name"),
      userSubject: text("#user-subject"),
      userEmail: text("#user-email"),
      projects: [...document.querySelectorAll("#projects li[data-project-id]")].map((li) => ({
        id: li.dataset.projectId,
        text: li.textContent,
      })),
      error: err && !err.hidden ? err.textContent : null,
      signInHref: document.querySelector("#sign-in")?.getAttribute("href") ?? null,
      logoutHref: document.querySelector("#logout")?.getAttribute("href") ?? null,
      hasRegisterForm: !!document.querySelector("#register-form"),
      roles: [...document.querySelectorAll("#roles li[data-role]")].map((li) => ({
        role: li.dataset.role,
        projects: li.querySelector(".projects")?.textContent ?? null,
        domains: li.querySelector(".domains")?.textContent ?? null,
      })),
      registerNote: (() => {
        const n = document.querySelector("#register-note");
        return n && !n.hidden ? n.textContent : null;
      })(),
      registerDisabled: !!document.querySelector("#register-form button[type=submit]")?.disabled,
    };
  });
}

/** Opens /console unless the page is already on it (e.g. after a step on another origin). */
async function ensureConsole(page) {
  const u = new URL(page.url());
  if (u.origin !== base || u.pathname !== "/console") {
    await page.goto(`${base}/console`, { timeout: STEP_TIMEOUT_MS });
  }
  return snapshot(page);
}

async function waitForConsole(page) {
  await page.waitForURL((u) => u.origin === base && u.pathname === "/console", { timeout: STEP_TIMEOUT_MS });
  return snapshot(page);
}

/** gRPC-web unary call made by the page itself (fetch with the browser's cookies). */
async function grpcWebFromPage(page, url, { csrf, frameB64 }) {
  return page.evaluate(
    async ({ url, csrf, frameB64 }) => {
      const cookie = document.cookie.split(";").map((s) => s.trim()).find((s) => s.startsWith("flyte_csrf="));
      const cookieCsrf = cookie ? cookie.slice("flyte_csrf=".length) : null;
      const headers = { "content-type": "application/grpc-web+proto", "x-grpc-web": "1" };
      if (csrf === "cookie" && cookieCsrf) headers["x-csrf-token"] = cookieCsrf;
      if (csrf === "wrong") headers["x-csrf-token"] = "not-the-token";
      const body = Uint8Array.from(atob(frameB64), (c) => c.charCodeAt(0));
      let res;
      try {
        res = await fetch(url, { method: "POST", headers, body, credentials: "include" });
      } catch (e) {
        return { fetchError: String(e), csrfCookieVisible: cookieCsrf !== null, origin: location.origin };
      }
      const buf = new Uint8Array(await res.arrayBuffer());
      // Trailers: header-only response, or the trailer frame (flag 0x80) in the body.
      let trailers = "";
      for (let i = 0; i + 5 <= buf.length; ) {
        const flag = buf[i];
        const len = (buf[i + 1] << 24) | (buf[i + 2] << 16) | (buf[i + 3] << 8) | buf[i + 4];
        if (flag & 0x80) trailers = new TextDecoder().decode(buf.slice(i + 5, i + 5 + len));
        i += 5 + len;
      }
      const fromTrailers = (name) => {
        const line = trailers.split("\r\n").find((l) => l.toLowerCase().startsWith(name + ":"));
        return line ? line.slice(name.length + 1).trim() : null;
      };
      const status = res.headers.get("grpc-status") ?? fromTrailers("grpc-status");
      const message = res.headers.get("grpc-message") ?? fromTrailers("grpc-message");
      return {
        httpStatus: res.status,
        grpcStatus: status === null ? null : Number(status),
        grpcMessage: message === null ? null : decodeURIComponent(message),
        dataFrames: buf.length > 0 && !(buf[0] & 0x80),
        csrfCookieVisible: cookieCsrf !== null,
        origin: location.origin,
      };
    },
    { url, csrf, frameB64 },
  );
}

/**
 * A fetch made by the page itself with the browser's cookies, as flyteconsole makes them
 * (e.g. `application/octet-stream` protobuf to the REST gateway, or gRPC-web), reading the
 * response body as a stream: reports when the first chunk and the end arrived, the gRPC-web
 * data frames and trailers. csrf: "cookie" | "none" | "wrong".
 */
async function fetchFromPage(page, url, { method, contentType, bodyB64, csrf }) {
  return page.evaluate(
    async ({ url, method, contentType, bodyB64, csrf }) => {
      const cookie = document.cookie.split(";").map((s) => s.trim()).find((s) => s.startsWith("flyte_csrf="));
      const cookieCsrf = cookie ? cookie.slice("flyte_csrf=".length) : null;
      const headers = {};
      if (contentType) headers["content-type"] = contentType;
      if (contentType && contentType.startsWith("application/grpc-web")) headers["x-grpc-web"] = "1";
      if (csrf === "cookie" && cookieCsrf) headers["x-csrf-token"] = cookieCsrf;
      if (csrf === "wrong") headers["x-csrf-token"] = "not-the-token";
      const body = bodyB64 == null ? undefined : Uint8Array.from(atob(bodyB64), (c) => c.charCodeAt(0));
      const t0 = performance.now();
      let res;
      try {
        res = await fetch(url, { method: method ?? "POST", headers, body, credentials: "include" });
      } catch (e) {
        return { fetchError: String(e), origin: location.origin };
      }
      const reader = res.body.getReader();
      const chunks = [];
      let firstChunkMs = null;
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        if (firstChunkMs === null && value.length > 0) firstChunkMs = performance.now() - t0;
        chunks.push(value);
      }
      const endMs = performance.now() - t0;
      const buf = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
      let off = 0;
      for (const c of chunks) {
        buf.set(c, off);
        off += c.length;
      }
      let dataFrames = 0;
      let trailers = "";
      if ((res.headers.get("content-type") ?? "").startsWith("application/grpc-web")) {
        for (let i = 0; i + 5 <= buf.length; ) {
          const flag = buf[i];
          const len = (buf[i + 1] << 24) | (buf[i + 2] << 16) | (buf[i + 3] << 8) | buf[i + 4];
          if (flag & 0x80) trailers = new TextDecoder().decode(buf.slice(i + 5, i + 5 + len));
          else dataFrames += 1;
          i += 5 + len;
        }
      }
      const fromTrailers = (name) => {
        const line = trailers.split("\r\n").find((l) => l.toLowerCase().startsWith(name + ":"));
        return line ? line.slice(name.length + 1).trim() : null;
      };
      const status = res.headers.get("grpc-status") ?? fromTrailers("grpc-status");
      const message = res.headers.get("grpc-message") ?? fromTrailers("grpc-message");
      return {
        httpStatus: res.status,
        grpcStatus: status === null ? null : Number(status),
        grpcMessage: message === null ? null : decodeURIComponent(message),
        dataFrames,
        firstChunkMs,
        endMs,
        bodyB64: btoa(String.fromCharCode(...buf)),
        upstreamHeader: res.headers.get("x-upstream"),
        wwwAuthenticate: res.headers.get("www-authenticate"),
        origin: location.origin,
      };
    },
    { url, method, contentType, bodyB64, csrf },
  );
}

// --------------------------------------------------------------------------- steps

const STEPS = {
  /** Opens /console and reports what it shows. */
  async open(page) {
    await page.goto(`${base}/console`, { timeout: STEP_TIMEOUT_MS });
    return snapshot(page);
  },

  /** Reloads the current page. */
  async reload(page) {
    await page.reload({ timeout: STEP_TIMEOUT_MS });
    return snapshot(page);
  },

  /**
   * From a signed-out /console: follows "Sign in", logs in at the identity source and comes
   * back to /console. kind "oidc": the IdP at idpOrigin (devInteractions login + consent);
   * kind "local": flyteauth's own form (username, password).
   */
  async signIn(page, step) {
    const navigations = [];
    const onRequest = (req) => {
      if (req.isNavigationRequest() && req.frame() === page.mainFrame()) navigations.push(req.url());
    };
    page.on("request", onRequest);
    try {
      await page.click("#sign-in", { timeout: STEP_TIMEOUT_MS });
      const out = { navigations, loginPage: null, consentScreens: 0 };
      if (step.kind === "oidc") {
        await page.waitForURL((u) => u.origin === step.idpOrigin, { timeout: STEP_TIMEOUT_MS });
        // The IdP's login form, then its consent screen (possibly skipped on a later login).
        for (let i = 0; i < 4; i++) {
          await page.waitForLoadState("load", { timeout: STEP_TIMEOUT_MS });
          const u = new URL(page.url());
          if (u.origin !== step.idpOrigin) break;
          if (await page.locator('input[name="login"]').count()) {
            out.loginPage = u.href;
            await page.fill('input[name="login"]', step.username);
            await page.fill('input[name="password"]', step.password);
          } else if (await page.locator('input[name="prompt"][value="consent"]').count()) {
            out.consentScreens += 1;
          } else {
            throw new Error(`unexpected IdP page ${u.href}: ${(await page.innerText("body")).slice(0, 500)}`);
          }
          await Promise.all([
            page.waitForURL((nu) => nu.href !== u.href, { timeout: STEP_TIMEOUT_MS, waitUntil: "commit" }),
            page.click('button[type="submit"]'),
          ]);
        }
      } else {
        await page.waitForURL((u) => u.origin === base && u.pathname === "/login", { timeout: STEP_TIMEOUT_MS });
        out.loginPage = page.url();
        out.loginFields = await page.$$eval("form input", (els) => els.map((e) => ({ name: e.name, type: e.type })));
        out.loginFormMethod = await page.getAttribute("form", "method");
        await page.fill('input[name="username"]', step.username);
        await page.fill('input[name="password"]', step.password);
        await Promise.all([
          page.waitForURL((nu) => nu.pathname !== "/login", { timeout: STEP_TIMEOUT_MS, waitUntil: "commit" }),
          page.click('button[type="submit"]'),
        ]);
      }
      out.console = await waitForConsole(page);
      return out;
    } finally {
      page.off("request", onRequest);
    }
  },

  /** Registers a project with the page's form; waits for it in the list or for an error. */
  async register(page, step) {
    await ensureConsole(page);
    await page.fill("#project-id", step.id);
    await page.fill("#project-name", step.name ?? "");
    await page.fill("#project-description", step.description ?? "");
    // Forget the previous list so the wait below sees the reload.
    await page.evaluate(() => delete document.querySelector("#projects")?.dataset.loaded);
    await page.click('#register-form button[type="submit"]');
    await page.waitForFunction(
      (id) =>
        document.querySelector(`#projects[data-loaded] li[data-project-id="${CSS.escape(id)}"]`) ||
        document.querySelector("#error:not([hidden])") ||
        document.querySelector("#app[data-state='signed-out']"),
      step.id,
      { timeout: STEP_TIMEOUT_MS },
    );
    return snapshot(page);
  },

  /** Follows the logout link and reports the page it lands on. */
  async logout(page) {
    await ensureConsole(page);
    await Promise.all([
      page.waitForURL((u) => !u.pathname.startsWith("/logout"), { timeout: STEP_TIMEOUT_MS }),
      page.click("#logout", { timeout: STEP_TIMEOUT_MS }),
    ]);
    await page.waitForLoadState("load", { timeout: STEP_TIMEOUT_MS });
    return snapshot(page);
  },

  /** A gRPC-web call from the console's own origin: csrf "cookie" | "none" | "wrong". */
  async grpcWeb(page, step) {
    await ensureConsole(page);
    return grpcWebFromPage(page, `${base}${step.path}`, step);
  },

  /**
   * The same call from a page on another origin: a page served by a throwaway HTTP server on
   * another port of 127.0.0.1 (same site, so the browser sends the cookies, and the page can
   * even read flyte_csrf — only the Origin check and CORS stand in the way). The call goes to
   * the real flyteauth.
   */
  async crossOrigin(page, step) {
    const other = http.createServer((_req, res) => {
      res.writeHead(200, { "content-type": "text/html" });
      res.end("<!doctype html><title>another origin</title><p>another origin</p>");
    });
    await new Promise((resolve) => other.listen(0, "127.0.0.1", resolve));
    try {
      await page.goto(`http://127.0.0.1:${other.address().port}/`, { timeout: STEP_TIMEOUT_MS });
      return await grpcWebFromPage(page, `${base}${step.path}`, { csrf: step.csrf ?? "cookie", frameB64: step.frameB64 });
    } finally {
      other.close();
      other.closeAllConnections();
    }
  },

  /** A console-style fetch from the console's own origin (see fetchFromPage). */
  async fetch(page, step) {
    await ensureConsole(page);
    return fetchFromPage(page, `${base}${step.path}`, step);
  },

  /** The same fetch from a page on another origin (as crossOrigin). */
  async crossOriginFetch(page, step) {
    const other = http.createServer((_req, res) => {
      res.writeHead(200, { "content-type": "text/html" });
      res.end("<!doctype html><title>another origin</title><p>another origin</p>");
    });
    await new Promise((resolve) => other.listen(0, "127.0.0.1", resolve));
    try {
      await page.goto(`http://127.0.0.1:${other.address().port}/`, { timeout: STEP_TIMEOUT_MS });
      return await fetchFromPage(page, `${base}${step.path}`, step);
    } finally {
      other.close();
      other.closeAllConnections();
    }
  },

  /**
   * A link to flyteauth's /logout on a page of another site (http://localhost:PORT, while
   * flyteauth is at 127.0.0.1): follows it and reports where it lands and the page's text
   * and forms. With step.confirm, then submits the page's form (the confirmation).
   */
  async crossSiteLogout(page, step) {
    const other = http.createServer((_req, res) => {
      res.writeHead(200, { "content-type": "text/html" });
      res.end(`<!doctype html><title>another site</title><a id="go" href="${base}/logout?redirect_url=/console">win a prize</a>`);
    });
    await new Promise((resolve) => other.listen(0, "127.0.0.1", resolve));
    try {
      await page.goto(`http://localhost:${other.address().port}/`, { timeout: STEP_TIMEOUT_MS });
      await Promise.all([
        page.waitForURL((u) => u.origin === base, { timeout: STEP_TIMEOUT_MS }),
        page.click("#go", { timeout: STEP_TIMEOUT_MS }),
      ]);
      await page.waitForLoadState("load", { timeout: STEP_TIMEOUT_MS });
      const out = {
        url: page.url(),
        text: (await page.innerText("body")).slice(0, 500),
        forms: await page.$$eval("form", (fs) => fs.map((f) => ({ method: f.method, action: f.action }))),
      };
      if (step.confirm) {
        await Promise.all([
          page.waitForURL((u) => u.pathname !== "/logout", { timeout: STEP_TIMEOUT_MS }),
          page.click('form button[type="submit"]', { timeout: STEP_TIMEOUT_MS }),
        ]);
        await page.waitForLoadState("load", { timeout: STEP_TIMEOUT_MS });
        out.confirmedUrl = page.url();
      }
      return out;
    } finally {
      other.close();
      other.closeAllConnections();
    }
  },

  /** What the browser logged so far (page console, page errors, failed requests, 4xx/5xx). */
  async diagnostics() {
    return [...diagnostics];
  },

  /** The browser's cookies for flyteauth (name, value, attributes). */
  async cookies(page) {
    return page.context().cookies(base);
  },
};

// --------------------------------------------------------------------------- main

let stepIndex = 0;
let page;
try {
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true, timeout: STEP_TIMEOUT_MS });
  const context = await browser.newContext(
    opts.storageIn && existsSync(opts.storageIn) ? { storageState: opts.storageIn } : {},
  );
  context.setDefaultTimeout(STEP_TIMEOUT_MS);
  page = await context.newPage();
  page.on("console", (m) => diagnostics.push(`console.${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => diagnostics.push(`pageerror: ${e.message}`));
  page.on("requestfailed", (r) => diagnostics.push(`requestfailed: ${r.method()} ${r.url()} ${r.failure()?.errorText}`));
  page.on("response", (r) => {
    if (r.status() >= 400) diagnostics.push(`response ${r.status()}: ${r.request().method()} ${r.url()}`);
  });

  for (; stepIndex < opts.steps.length; stepIndex++) {
    const step = opts.steps[stepIndex];
    const fn = STEPS[step.do];
    if (!fn) throw new Error(`unknown step "${step.do}"`);
    results.push(await fn(page, step));
  }
  if (opts.storageOut) await context.storageState({ path: opts.storageOut });
  clearTimeout(watchdog);
  console.log(JSON.stringify({ ok: true, results, console: diagnostics.slice(-50) }));
  await browser.close();
  process.exit(0);
} catch (e) {
  let url = null;
  let text = null;
  try {
    url = page?.url() ?? null;
    text = page ? (await page.innerText("body", { timeout: 2000 })).slice(0, 2000) : null;
  } catch {
    // the page may be gone
  }
  clearTimeout(watchdog);
  console.log(JSON.stringify({
    ok: false, step: stepIndex, error: String(e?.stack ?? e), url, text, console: diagnostics.slice(-50), results,
  }));
  await browser?.close().catch(() => {});
  process.exit(1);
}
