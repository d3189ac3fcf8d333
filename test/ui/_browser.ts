/**
 * What the browser tests share: Debian's chromium through playwright-core (nothing downloaded),
 * and a page.goto that survives Chromium's own network-change aborts.
 */
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";

/** Debian's chromium, headless; playwright adds --no-sandbox for root itself, we say it too. */
export const launchChromium = (): Promise<Browser> => chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });

/**
 * page.goto, again when Chromium aborts it because a network interface appeared or went on the
 * machine (other tests' dockerd bridges and namespaces), even for 127.0.0.1: it then fails with
 * ERR_NETWORK_CHANGED or is "interrupted by another navigation to chrome-error://".
 */
export async function goto(page: Page, url: string) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await page.goto(url);
    } catch (err) {
      const changed = /ERR_NETWORK_CHANGED|chrome-error:\/\//.test(String(err));
      if (attempt >= 4 || !changed) throw err;
      await Bun.sleep(200);
    }
  }
}

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
  await goto(page, `${url}/ui/`);
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
  return { ctx, page };
}
