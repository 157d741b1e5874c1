// The web UI's browser test, run by tests/tests/web_ui.rs: real headless Chromium
// (Debian's, driven by playwright-core) against a running engine. Steps that need the
// databases are asked of the Rust test over stdout/stdin: this script prints
// `STEP name args` and waits for `OK` (or `FAIL why`). Exits non-zero on any failure.
// Screenshots of each page go to $SCREENSHOTS.
import { createInterface } from 'node:readline';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const { URL: BASE, TOKEN, PLAYWRIGHT_CORE, SCREENSHOTS } = process.env;
const { chromium } = await import(pathToFileURL(PLAYWRIGHT_CORE).href);
const WAIT = 60_000;

const lines = createInterface({ input: process.stdin });
const answers = lines[Symbol.asyncIterator]();
/** Asks the Rust side to do a database step; fails when it says FAIL. */
async function step(name, ...args) {
  console.log(`STEP ${name} ${args.join(' ')}`.trim());
  const { value } = await answers.next();
  if (value !== 'OK') throw new Error(`step ${name}: ${value}`);
}

mkdirSync(SCREENSHOTS, { recursive: true });
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
});
const problems = [];
let failed = false;
try {
  const context = await browser.newContext({ viewport: { width: 1366, height: 800 } });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    // Refused requests (a wrong token, a bad filter) are part of the scenario; the
    // browser logs each; script errors and CSP violations are problems.
    if (message.type() === 'error' && !message.text().startsWith('Failed to load resource')) problems.push(`console: ${message.text()}`);
  });
  const shot = (name) => page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true });
  const expectText = async (locator, text) => {
    await locator.filter({ hasText: text }).first().waitFor();
  };
  const row = (map) => page.locator(`tr[data-map="${map}"]`);

  // ---- log in: a wrong token is refused with a message, the right one opens the maps.
  await page.goto(`${BASE}/`);
  await page.getByLabel('Admin API token').waitFor();
  await shot('01-login');
  await page.getByLabel('Admin API token').fill('not-the-token-at-all');
  await page.getByRole('button', { name: 'Log in' }).click();
  await expectText(page.getByRole('alert'), 'not the admin token');
  await page.getByLabel('Admin API token').fill(TOKEN);
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: 'Maps' }).waitFor();
  await row('customer-groups').locator('.badge.running').waitFor();
  const html = await page.content();
  if (html.includes(TOKEN)) throw new Error('the token is in the page');
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === 'dualwrite_session');
  if (!session || !session.httpOnly || session.sameSite !== 'Strict') throw new Error(`session cookie: ${JSON.stringify(session)}`);
  if (cookies.some((c) => c.value.includes(TOKEN))) throw new Error('the token is in a cookie');
  await shot('02-maps');

  // ---- pause, edit the ERP, see the queue grow live, resume with catch-up.
  await page.getByRole('button', { name: 'Pause customer-groups' }).click();
  await row('customer-groups').locator('.badge.paused').waitFor();
  await step('erp-insert', 'G1', 'G2');
  await page.waitForFunction(() => {
    const cell = document.querySelector('tr[data-map="customer-groups"] td:nth-child(8)');
    return cell && Number(cell.textContent.replace(/,/g, '')) >= 2;
  });
  await step('crm-lacks', 'G1', 'G2');
  await shot('03-maps-paused');
  await page.getByLabel('How customer-groups resumes').selectOption('catch-up');
  await page.getByRole('button', { name: 'Resume customer-groups' }).click();
  await row('customer-groups').locator('.badge.running').waitFor();
  await step('crm-has', 'G1', 'G2');

  // A row's history shows it on both sides (found from the activity page).
  await page.getByRole('link', { name: 'Activity' }).click();
  await page.locator('#activity-map').selectOption('customer-groups');
  await page.locator('#activity-side').selectOption('erp');
  await page.locator('#activity-key').fill('["usmf","G2"]');
  await page.getByRole('button', { name: 'Row history' }).click();
  await page.getByRole('heading', { name: /History of customer-groups row/ }).waitFor();
  await page.getByRole('heading', { name: 'Last synced images, both sides' }).waitFor();
  await expectText(page.locator('td'), 'msdyn_groupid');
  await shot('04-row-history');

  // ---- edit the declarative filter: a bad one is refused naming the field, a good
  // one is in force at once.
  await page.getByRole('link', { name: 'Maps' }).click();
  await page.getByRole('link', { name: 'customer-groups' }).click();
  await page.getByRole('heading', { name: 'Field mappings' }).waitFor();
  await expectText(page.locator('table[aria-label="Field mappings"] td'), 'value-map');
  // The error mode: block, then back to continue; recorded as state changes.
  const errorModeIs = (mode) => page.waitForFunction(
    async (wanted) => (await (await fetch('/api/v1/maps/customer-groups')).json()).error_mode === wanted, mode);
  await page.getByLabel('On an error').selectOption('block');
  await errorModeIs('block');
  await page.getByLabel('On an error').selectOption('continue');
  await errorModeIs('continue');
  await page.getByLabel('ERP filter').fill('DESCRIPTION ==');
  await page.getByRole('button', { name: 'Apply', exact: true }).click();
  await expectText(page.locator('#config-problem'), 'filters/erp');
  if ((await page.getByLabel('ERP filter').getAttribute('aria-invalid')) !== 'true') throw new Error('the bad filter is not marked');
  await shot('06-map-filter-refused');
  await page.getByLabel('ERP filter').fill('');
  // A default the target's kind cannot hold is refused naming the line's default.
  await page.locator('#line-3-default').fill('"notabool"');
  await page.getByRole('button', { name: 'Apply', exact: true }).click();
  await expectText(page.locator('#config-problem'), 'fields/3/default');
  if ((await page.locator('#line-3-default').getAttribute('aria-invalid')) !== 'true') throw new Error('the bad default is not marked');
  await page.locator('#line-3-default').fill('');
  // A direction and a default: in force, shown in the mappings the plugin describes.
  await page.locator('#line-2-direction').selectOption('to-crm');
  await page.locator('#line-2-default').fill('"n/a"');
  await page.getByRole('button', { name: 'Apply', exact: true }).click();
  await expectText(page.locator('table[aria-label="Field mappings"] tr', { hasText: 'DESCRIPTION' }), 'to-crm');
  await page.getByLabel('ERP filter').fill('DESCRIPTION != "internal"');
  await page.getByLabel('Reason', { exact: true }).fill('keep internal groups out of the CRM');
  await page.getByRole('button', { name: 'Apply', exact: true }).click();
  await expectText(page.locator('table[aria-label="Config history"] td'), 'keep internal groups out of the CRM');
  await expectText(page.locator('code'), 'DESCRIPTION != "internal"');
  await shot('07-map-filter-applied');
  await step('filter-effect', 'G3', 'G4');
  // Roll back to the config file's (no filter), then forward again by history.
  await page.getByRole('button', { name: 'Roll back to the previous config' }).click();
  await expectText(page.locator('table[aria-label="Config history"] td'), 'rollback to #1');
  await expectText(page.locator('p'), 'ERP: none');
  await page.getByRole('button', { name: 'Roll back customer-groups to config 2' }).click();
  await expectText(page.locator('code'), 'DESCRIPTION != "internal"');
  // The dashboard counts the filtered change; the activity log has the config change.
  await page.getByRole('link', { name: 'Maps' }).click();
  await page.waitForFunction(() => {
    const cell = document.querySelector('tr[data-map="customer-groups"] td:nth-child(5)');
    return cell && Number(cell.textContent.replace(/,/g, '')) >= 1;
  });
  await page.getByRole('link', { name: 'Activity' }).click();
  await page.locator('#activity-map').selectOption('customer-groups');
  await page.locator('#activity-kind').selectOption('plugin-version');
  await page.getByRole('button', { name: 'Show' }).click();
  await expectText(page.locator('table[aria-label="Activity"] td'), 'keep internal groups out of the CRM');
  await shot('05-activity');

  // ---- a change fails, shows in the error queue; the cause is fixed, retry applies it.
  await step('make-failure', 'G5');
  await page.getByRole('link', { name: 'Errors' }).click();
  await page.getByRole('heading', { name: 'Error queue' }).waitFor();
  await expectText(page.locator('table[aria-label="Errors"] tr'), '"G5"');
  await shot('08-errors');
  const errorRow = page.locator('table[aria-label="Errors"] tr', { hasText: '"G5"' });
  const retry = errorRow.getByRole('button', { name: /^Retry error/ });
  await step('fix-failure');
  await retry.click();
  // Applied, it leaves the queue (the table reloads after the retry).
  await errorRow.waitFor({ state: 'detached' });
  await step('crm-has', 'G5');

  // ---- the dependency graph, drawn.
  await page.getByRole('link', { name: 'Dependencies' }).click();
  await page.locator('svg g.node[data-map="customer-groups"]').waitFor();
  await page.locator('svg g.node[data-map="companies"]').waitFor();
  if ((await page.locator('svg path.edge').count()) < 1) throw new Error('no dependency arrow');
  await page.locator('svg g.node.running[data-map="customer-groups"]').waitFor();
  await shot('09-graph');

  // ---- alerts, plugins: a rule made by clicking appears.
  await page.getByRole('link', { name: 'Alerts' }).click();
  await page.locator('#rule-name').fill('app-errors');
  await page.locator('#rule-count').fill('10');
  await page.locator('#rule-window').fill('15m');
  await page.getByLabel('pause', { exact: true }).check();
  await page.getByRole('button', { name: 'Save rule' }).click();
  await expectText(page.locator('table[aria-label="Alert rules"] td'), 'app-errors');
  await page.getByRole('button', { name: 'Edit alert rule app-errors' }).click();
  await page.locator('#edit-rule-count').fill('5');
  await page.locator('form[aria-label="Edit alert rule app-errors"]').getByRole('button', { name: 'Save rule' }).click();
  await expectText(page.locator('table[aria-label="Alert rules"] td'), '5 in 15m');
  await page.locator('#subscriber-name').fill('ops-hook');
  await page.locator('#subscriber-url').fill('http://127.0.0.1:9/hook');
  await page.locator('#subscriber-secret').fill('a-signing-secret-0123456789');
  await page.getByRole('button', { name: 'Save subscriber' }).click();
  await expectText(page.locator('table[aria-label="Subscribers"] td'), 'ops-hook');
  if ((await page.content()).includes('a-signing-secret-0123456789')) throw new Error('a subscriber secret is in the page');
  await shot('10-alerts');
  page.once('dialog', (dialog) => dialog.accept());
  await page.getByRole('button', { name: 'Delete subscriber ops-hook' }).click();
  await page.locator('table[aria-label="Subscribers"] td', { hasText: 'ops-hook' }).waitFor({ state: 'detached' });
  page.once('dialog', (dialog) => dialog.accept());
  await page.getByRole('button', { name: 'Delete alert rule app-errors' }).click();
  await page.locator('table[aria-label="Alert rules"] td', { hasText: 'app-errors' }).waitFor({ state: 'detached' });
  await page.getByRole('link', { name: 'Plugins' }).click();
  await expectText(page.locator('table[aria-label="Plugins"] td'), 'declarative');
  await shot('11-plugins');

  // ---- a conflict (both sides edited while paused) is parked; shown side by side and
  // resolved by picking a side.
  await step('company-insert', 'C1');
  await page.getByRole('link', { name: 'Maps' }).click();
  await page.getByRole('button', { name: 'Pause companies' }).click();
  await row('companies').locator('.badge.paused').waitFor();
  await step('company-conflict', 'C1');
  await page.waitForFunction(() => {
    const cell = document.querySelector('tr[data-map="companies"] td:nth-child(8)');
    return cell && Number(cell.textContent.replace(/,/g, '')) >= 2;
  });
  await page.getByLabel('How companies resumes').selectOption('catch-up');
  await page.getByRole('button', { name: 'Resume companies' }).click();
  await row('companies').locator('.badge.running').waitFor();
  await page.getByRole('link', { name: 'Errors' }).click();
  const conflictRow = page.locator('table[aria-label="Errors"] tr', { hasText: '"C1"' }).first();
  await conflictRow.waitFor();
  await conflictRow.getByRole('link', { name: 'Resolve…' }).click();
  await page.getByRole('heading', { name: 'Conflict: base and both sides' }).waitFor();
  await expectText(page.locator('[aria-label="Conflict images"] td'), 'ERP edit');
  await expectText(page.locator('[aria-label="Conflict images"] td'), 'CRM edit');
  await shot('12-conflict');
  await page.getByRole('button', { name: 'ERP wins' }).click();
  await page.getByText('Resolved: ').waitFor();
  await step('crm-company-name', 'C1', 'ERP edit');

  // ---- an initial sync started by clicking shows its progress.
  await page.getByRole('link', { name: 'Maps' }).click();
  await page.getByRole('button', { name: 'Initial sync of customer-groups' }).click();
  await row('customer-groups').locator('progress').first().waitFor();
  await expectText(row('customer-groups').locator('td'), '✓');
  await shot('13-initial-sync');

  // ---- log out: the API no longer answers the page.
  await page.getByRole('button', { name: 'Log out' }).click();
  await page.getByLabel('Admin API token').waitFor();
  const status = await page.evaluate(async () => (await fetch('/api/v1/maps')).status);
  if (status !== 401) throw new Error(`after logout the API answered ${status}`);
  if (problems.length) throw new Error(problems.join('\n'));
} catch (error) {
  failed = true;
  console.error(`BROWSER TEST FAILED: ${error.stack || error}`);
  try {
    const pages = browser.contexts().flatMap((c) => c.pages());
    if (pages[0]) await pages[0].screenshot({ path: join(SCREENSHOTS, 'failure.png'), fullPage: true });
  } catch { /* the failure is reported anyway */ }
} finally {
  await browser.close();
  lines.close();
}
process.exit(failed ? 1 : 0);
