// The page at GET / in headless Chromium (Debian's, driven by puppeteer-core):
// upload jfk.wav through the file input, wait for the streamed transcript,
// download it as srt/vtt/txt/json and check each file, check the error display
// and the API key, and save a screenshot.
// Run: AMA_SERVER_URL=http://127.0.0.1:PORT node --test web_page.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import puppeteer from 'puppeteer-core';
import { serverUrl, audioPath, audioSeconds, artifactDir, parseSrt, parseVtt } from './common.mjs';

const chromium = process.env.CHROMIUM || '/usr/bin/chromium';
// The server runs with --api-key AMA_API_KEY (tests/test_clients.cpp); the page must send it.
const apiKey = process.env.AMA_API_KEY || 'test-key-123';
const auth = { Authorization: 'Bearer ' + apiKey };
const downloads = path.join(artifactDir, 'downloads');
let browser;

before(async () => {
  assert.ok(fs.existsSync(chromium), `no Chromium at ${chromium} (Debian: apt-get install chromium; or set CHROMIUM)`);
  browser = await puppeteer.launch({
    executablePath: chromium,
    headless: true,
    args: ['--no-sandbox', '--headless=new', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run',
           '--window-size=1100,1400'],
    defaultViewport: { width: 1100, height: 1400 },
  });
  fs.rmSync(downloads, { recursive: true, force: true });
  fs.mkdirSync(downloads, { recursive: true });
  const session = await browser.target().createCDPSession();
  await session.send('Browser.setDownloadBehavior', { behavior: 'allow', downloadPath: downloads, eventsEnabled: true });
});

after(async () => { if (browser) await browser.close(); });

// A page that fails the test on any script error or on a request that leaves the server.
async function openPage() {
  const page = await browser.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push('page error: ' + e.message));
  // Script errors only: Chromium also logs every HTTP error status ("Failed to load resource"),
  // such as the 401 of /v1/models before the API key is entered.
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) problems.push('console error: ' + m.text());
  });
  page.on('request', (r) => {
    const u = r.url();
    if (!u.startsWith(serverUrl + '/') && !u.startsWith('blob:') && !u.startsWith('data:')) problems.push('external request: ' + u);
  });
  const response = await page.goto(serverUrl + '/', { waitUntil: 'load' });
  assert.equal(response.status(), 200, 'GET / status');
  assert.match(response.headers()['content-type'] || '', /^text\/html/, 'GET / content type');
  return { page, problems };
}

// Waits for the page's body[data-state] to be done or error; returns which.
async function finished(page, timeout = 240_000) {
  await page.waitForFunction(() => ['done', 'error'].includes(document.body.dataset.state), { timeout, polling: 100 });
  return page.evaluate(() => document.body.dataset.state);
}

// Clicks a download button and waits for the file to land in `downloads`.
async function download(page, id, ext) {
  const before = new Set(fs.readdirSync(downloads));
  await page.click('#' + id);
  const deadline = Date.now() + 120_000;
  while (Date.now() < deadline) {
    const fresh = fs.readdirSync(downloads).filter((f) => !before.has(f) && f.endsWith('.' + ext));
    if (fresh.length) {
      const file = path.join(downloads, fresh[0]);
      await new Promise((r) => setTimeout(r, 200));  // let Chromium finish the rename
      return { file, content: fs.readFileSync(file, 'utf8') };
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const err = await page.$eval('#error', (e) => (e.hidden ? '' : e.textContent));
  assert.fail(`no .${ext} download after clicking #${id}` + (err ? `; the page says: ${err}` : ''));
}

test('the page is one self-contained, labelled document', async () => {
  const { page, problems } = await openPage();
  assert.match(await page.title(), /Amanuensis/);
  // Nothing loaded from elsewhere: no external scripts, styles, images or fonts.
  const external = await page.evaluate(() =>
    [...document.querySelectorAll('script[src], link[href], img[src], iframe, object, embed')]
      .filter((e) => !(e.src || e.href || '').startsWith('data:')).map((e) => e.outerHTML));
  assert.deepEqual(external, [], 'external resources');
  // Every form control has an accessible label.
  const unlabelled = await page.evaluate(() =>
    [...document.querySelectorAll('input, select, textarea')]
      .filter((e) => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
      .map((e) => e.id || e.outerHTML));
  assert.deepEqual(unlabelled, [], 'controls without a label');
  const langs = await page.$$eval('#language option', (o) => o.map((x) => x.value));
  assert.ok(langs.includes('') && langs.includes('en') && langs.length >= 100, `language options: ${langs.length}`);
  assert.deepEqual(await page.$$eval('#task option', (o) => o.map((x) => x.value)), ['transcribe', 'translate']);
  assert.deepEqual(problems, []);
  await page.close();
});

test('upload jfk.wav, see the streamed transcript, download srt/vtt/txt/json, screenshot', async () => {
  const { page, problems } = await openPage();
  // The API key is kept in localStorage and sent as a bearer token.
  await page.type('#api-key', apiKey);
  await page.reload({ waitUntil: 'load' });
  assert.equal(await page.$eval('#api-key', (e) => e.value), apiKey, 'the API key did not survive a reload');
  const posts = [];
  page.on('request', (r) => { if (r.method() === 'POST') posts.push({ url: r.url(), headers: r.headers(), body: r.postData() }); });
  const responses = [];
  page.on('response', (r) => { if (r.request().method() === 'POST') responses.push({ status: r.status(), type: r.headers()['content-type'] }); });

  assert.equal(await page.$eval('#start', (b) => b.disabled), true, 'start is enabled with no file');
  const input = await page.$('#file');
  await input.uploadFile(audioPath);
  await page.waitForFunction(() => !document.getElementById('start').disabled);
  assert.match(await page.$eval('#file-name', (e) => e.textContent), /jfk\.wav/);
  await page.click('#start');
  const state = await finished(page);
  if (state !== 'done') assert.fail('the page shows an error: ' + (await page.$eval('#error', (e) => e.textContent)));

  assert.equal(posts.length, 1, 'one POST');
  assert.equal(new URL(posts[0].url).pathname, '/v1/audio/transcriptions');
  assert.equal(posts[0].headers.authorization, 'Bearer ' + apiKey, 'Authorization header');
  assert.equal(responses[0].status, 200);
  assert.match(responses[0].type || '', /^text\/event-stream/, 'the page asked for a stream (stream=true)');

  assert.equal(await page.$eval('#upload-pct', (e) => e.textContent), '100%', 'upload progress');
  assert.equal(await page.$eval('#decode-progress', (e) => e.value), 1, 'transcription progress');
  const texts = await page.$$eval('#segments li .text', (l) => l.map((e) => e.textContent));
  assert.ok(texts.length >= 1 && texts.join('').trim().length > 0, `no transcript on the page: ${JSON.stringify(texts)}`);
  const status = await page.$eval('#status', (e) => e.textContent);
  assert.match(status, /done/i);

  const shot = path.join(artifactDir, 'web_page.png');
  await page.screenshot({ path: shot, fullPage: true });
  console.log(`screenshot: ${shot}`);

  const srt = await download(page, 'dl-srt', 'srt');
  assert.equal(path.basename(srt.file), 'jfk.srt');
  const cues = parseSrt(srt.content);
  assert.ok(cues.length >= 1, 'no SRT cue');
  assert.ok(cues.at(-1).end <= audioSeconds + 0.02, `the last cue ends at ${cues.at(-1).end} s`);
  assert.equal(cues.map((c) => c.text.trim()).join(' '), texts.map((t) => t.trim()).filter(Boolean).join(' '),
               'the SRT cues are not the transcript on the page');
  console.log(`srt: ${srt.file} (${cues.length} cues)`);

  const vtt = await download(page, 'dl-vtt', 'vtt');
  assert.equal(parseVtt(vtt.content).length, cues.length, 'WebVTT and SRT cue counts differ');

  const txt = await download(page, 'dl-txt', 'txt');
  assert.ok(txt.content.trim().length > 0, 'empty txt');

  const json = JSON.parse((await download(page, 'dl-json', 'json')).content);
  assert.equal(typeof json.text, 'string');
  assert.ok(Array.isArray(json.segments) && json.segments.length === cues.length, 'json segments');
  for (const s of json.segments) assert.ok(Number.isFinite(s.start) && Number.isFinite(s.end) && typeof s.text === 'string');

  assert.deepEqual(problems, []);
  await page.close();
});

test('translate: the page posts to /v1/audio/translations', async () => {
  const { page, problems } = await openPage();
  const urls = [];
  page.on('request', (r) => { if (r.method() === 'POST') urls.push(new URL(r.url()).pathname); });
  await (await page.$('#file')).uploadFile(audioPath);
  await page.select('#task', 'translate');
  assert.equal(await page.$eval('#start', (b) => b.textContent), 'Translate');
  await page.click('#start');
  const state = await finished(page);
  if (state !== 'done') assert.fail('the page shows an error: ' + (await page.$eval('#error', (e) => e.textContent)));
  assert.deepEqual(urls, ['/v1/audio/translations']);
  assert.ok((await page.$$('#segments li')).length >= 1);
  assert.deepEqual(problems, []);
  await page.close();
});

test('a server error is shown with its message', async () => {
  // What the server says about a file that is not audio.
  const form = new FormData();
  form.append('file', new Blob(['this is not audio']), 'notes.wav');
  form.append('model', 'whisper-1');
  const direct = await fetch(serverUrl + '/v1/audio/transcriptions', { method: 'POST', body: form, headers: auth });
  assert.ok(direct.status >= 400 && direct.status < 500, `status ${direct.status} for a non-audio file`);
  const message = (await direct.json()).error.message;
  assert.equal(typeof message, 'string');
  // The server names its temporary upload file, which differs per request.
  const same = (t) => t.replace(/amanuensis-upload-[A-Za-z0-9]+/g, 'amanuensis-upload-X');

  const { page } = await openPage();
  await page.evaluate((k) => localStorage.setItem('amanuensis.apiKey', k), apiKey);
  await page.reload({ waitUntil: 'load' });
  const notAudio = path.join(artifactDir, 'notes.wav');
  fs.writeFileSync(notAudio, 'this is not audio');
  await (await page.$('#file')).uploadFile(notAudio);
  await page.click('#start');
  assert.equal(await finished(page, 60_000), 'error');
  const shown = await page.$eval('#error', (e) => ({ hidden: e.hidden, text: e.textContent, role: e.getAttribute('role') }));
  assert.equal(shown.hidden, false, 'the error is hidden');
  assert.equal(shown.role, 'alert');
  assert.ok(same(shown.text).includes(same(message)), `the page shows ${JSON.stringify(shown.text)}, the server said ${JSON.stringify(message)}`);
  assert.match(shown.text, new RegExp('HTTP ' + direct.status));
  // The downloads stay off when there is no transcript.
  assert.equal(await page.$eval('#dl-srt', (b) => b.disabled), true);
  await page.screenshot({ path: path.join(artifactDir, 'web_page_error.png') });
  await page.close();
});

test('a wrong API key is shown as the server\'s 401 message', async () => {
  const { page } = await openPage();
  await page.evaluate(() => localStorage.setItem('amanuensis.apiKey', 'wrong-key'));
  await page.reload({ waitUntil: 'load' });
  await (await page.$('#file')).uploadFile(audioPath);
  await page.click('#start');
  assert.equal(await finished(page, 60_000), 'error');
  const text = await page.$eval('#error', (e) => e.textContent);
  assert.match(text, /^HTTP 401: \S/, `the page shows ${JSON.stringify(text)}`);
  await page.close();
});
