/**
 * What the browser tests share: Debian's chromium through playwright-core (nothing downloaded),
 * and a page.goto that survives Chromium's own network-change aborts.
 */
import { afterAll, beforeAll } from "bun:test";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import type { GatewayHandle, GatewayOptions } from "../harness/gateway.ts";
import { gatewayForTests } from "./_gateway.ts";

/** Debian's chromium, headless; playwright adds --no-sandbox for root itself, we say it too. */
export const launchChromium = (): Promise<Browser> => chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });

/**
 * Chromium aborts a navigation when a network interface appears or goes on the machine (other
 * tests' dockerd bridges and namespaces), even one to 127.0.0.1: it then fails with
 * ERR_NETWORK_CHANGED or is "interrupted by another navigation to chrome-error://". Such an abort
 * is the machine's, not the page's: the navigation is worth doing again. Chromium also reloads
 * its own error page by itself, so the abort can surface as "interrupted by another navigation
 * to" the very URL asked for (a CI run of 2026-12-05); no test here navigates twice at once.
 */
const NETWORK_CHANGED = /ERR_NETWORK_CHANGED|chrome-error:\/\/|interrupted by another navigation to/;
const networkChanged = (err: unknown) => NETWORK_CHANGED.test(String(err)) || NETWORK_CHANGED.test(String((err as Error)?.cause));

/** Runs `navigate` again (up to 4 times in all) when Chromium aborted it for a network change. */
async function retryNetworkChange<T>(navigate: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await navigate();
    } catch (err) {
      if (attempt >= 4 || !networkChanged(err)) throw err;
      await Bun.sleep(200);
    }
  }
}

/**
 * A gateway and the browser for a test file's tests: started before them (a later beforeAll of the
 * file sees both), stopped after them. Read `g` and `browser` once they are started.
 */
export function gatewayAndBrowser(options?: GatewayOptions): { readonly g: GatewayHandle; browser: Browser } {
  const gateway = gatewayForTests(options);
  const both = {
    get g() {
      return gateway.g;
    },
  } as { readonly g: GatewayHandle; browser: Browser };
  beforeAll(async () => {
    both.browser = await launchChromium();
  }, 120_000);
  afterAll(async () => {
    await both.browser?.close();
  }, 120_000);
  return both;
}

/** page.goto, again when Chromium aborts it for a network change. */
export const goto = (page: Page, url: string) => retryNetworkChange(() => page.goto(url));

/**
 * Clicks the submit button `name` of a form that posts and is answered with a page (a redirect,
 * often back to the page it is on), and waits until that page has loaded. page.waitForURL is no
 * wait for a form that comes back to its own URL (it resolves at once, the URL already matches):
 * a test then went on with the old page, filled a field that the arriving page replaced, and
 * waited in vain for what its button should have shown.
 */
export async function submit(page: Page, name: string | RegExp): Promise<void> {
  const loaded = page.waitForEvent("load");
  await page.getByRole("button", { name }).click();
  await loaded;
}

/**
 * A new browser context signed in to the dashboard at `url` with `token`: /ui/ first sends it to
 * the sign-in page (throws if it does not), then the form. Confirmation dialogs are accepted.
 */
export async function signIn(
  browser: Browser,
  url: string,
  token: string,
  viewport: { width: number; height: number } = { width: 1280, height: 900 },
): Promise<{ ctx: BrowserContext; page: Page }> {
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport });
  const page = await ctx.newPage();
  page.on("dialog", (d) => void d.accept());
  // The whole sign-in again when Chromium aborts its form post for a network change (a CI run of
  // 2026-12-05: ERR_NETWORK_CHANGED while kanto tests made and removed docker networks).
  let again = false;
  await retryNetworkChange(async () => {
    await goto(page, `${url}/ui/`);
    // An aborted attempt may have signed in all the same: its cookie takes /ui/ to the overview.
    if (again && page.url() === `${url}/ui/`) return;
    again = true;
    if (!page.url().endsWith("/ui/login")) throw new Error(`/ui/ without a session went to ${page.url()}, not the sign-in page`);
    await page.getByLabel(/API token/).fill(token);
    // Waiting from before the click, and saying where the browser is if it never arrives: once in
    // a while (one CI run of 2026-12-04) the overview did not come within 30 s, and the bare timeout told nothing.
    const arrived = page.waitForURL(`${url}/ui/`).catch(async (e: unknown) => {
      const said = await page.locator("[role=alert]").allTextContents().catch(() => []);
      throw new Error(`sign-in did not reach ${url}/ui/: the browser is at ${page.url()}${said.length ? `, saying "${said.join(" ")}"` : ""}`, { cause: e });
    });
    await page.getByRole("button", { name: "Sign in" }).click();
    await arrived;
  });
  return { ctx, page };
}
