// Open the page in headless Chromium and print, as JSON, what it shows: its state, words, error and speed,
// and every file it fetched with its size. tests/test_web.py drives the page through this script.
//
//   node browse.mjs 'http://127.0.0.1:8000/?model=model.tflite&seed=9&n=12' [--upload FILE] [--screenshot PNG]
//
// --upload chooses FILE in the page's file input once the page is idle; --again N clicks Generate N more times
// (warm runs: their words/s are in "again"); --evaluate JS runs the async function body JS in the page once it
// settled (its result is in "evaluated"). Chromium is $CHROMIUM or /usr/bin/chromium.
import {parseArgs} from 'node:util';
import {chromium} from 'playwright-core';

const {values: options, positionals: [url]} = parseArgs({
  allowPositionals: true,
  options: {upload: {type: 'string'}, screenshot: {type: 'string'}, again: {type: 'string', default: '0'},
            timeout: {type: 'string', default: '60000'}, evaluate: {type: 'string'}},
});
const timeout = Number(options.timeout);
const settled = state => ['done', 'error'].includes(state);

const browser = await chromium.launch({executablePath: process.env.CHROMIUM || '/usr/bin/chromium'});
try {
  const page = await browser.newPage({viewport: {width: 800, height: 600}});
  const pageErrors = [];
  page.on('pageerror', error => pageErrors.push(String(error)));
  const fetched = [];
  page.on('requestfinished', request => fetched.push(
    request.sizes().then(sizes => ({url: request.url(), bytes: sizes.responseBodySize}))));

  await page.goto(url);
  const state = () => page.locator('main').getAttribute('data-state');
  if (options.upload) {
    await page.waitForSelector('main[data-state=idle]', {timeout});
    await page.setInputFiles('#file', options.upload);
  }
  const waitUntilSettled = () => page.waitForFunction(
    () => ['done', 'error'].includes(document.querySelector('main').dataset.state), null, {timeout});
  await waitUntilSettled();
  const stats = page.locator('#stats');
  const again = [];
  for (let i = 0; i < Number(options.again); i++) {
    await page.click('#generate');
    await waitUntilSettled();
    again.push(Number(await stats.getAttribute('data-words-per-second')));
  }
  const evaluated = options.evaluate ? await page.evaluate(`(async () => { ${options.evaluate} })()`) : null;
  if (options.screenshot) await page.screenshot({path: options.screenshot, fullPage: true});
  console.log(JSON.stringify({
    state: await state(),
    words: await page.locator('.word').allTextContents(),
    error: await page.$eval('#error', element => (element.hidden ? null : element.textContent)),
    stats: await stats.textContent(),
    firstWordsMs: Number(await stats.getAttribute('data-first-words-ms')) || null,
    wordsPerSecond: Number(await stats.getAttribute('data-words-per-second')) || null,
    again,
    evaluated,
    fetched: await Promise.all(fetched),
    pageErrors,
    chromium: browser.version(),
  }, null, 1));
  if (!settled(await state())) process.exitCode = 1;
} finally {
  await browser.close();
}
