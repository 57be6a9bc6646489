#include "server/web_page.h"

#include <algorithm>
#include <string>
#include <vector>

#include "text/languages.h"

namespace ama::server {

namespace {

// The document. "<!--LANGUAGES-->" is replaced by one <option> per language.
// Everything is inline: the page must work with no network but this server.
constexpr std::string_view kPage = R"AMA_HTML(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Amanuensis — speech to text</title>
<link rel="icon" href="data:,">
<style>
:root { color-scheme: light dark; --fg:#1b1f24; --bg:#f6f7f9; --card:#fff; --muted:#5a6470; --accent:#2457c5;
  --border:#c9cfd6; --err-bg:#fde8e8; --err-fg:#8a1111; --ok:#1d7a3a; }
@media (prefers-color-scheme: dark) { :root { --fg:#e7eaee; --bg:#15181c; --card:#1e2227; --muted:#a2acb8;
  --accent:#7aa2ff; --border:#3a424c; --err-bg:#4a1c1c; --err-fg:#ffd0d0; --ok:#6fd08f; } }
* { box-sizing: border-box; }
body { margin:0; font:16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color:var(--fg); background:var(--bg); }
main { max-width: 52rem; margin: 0 auto; padding: 1.25rem; }
h1 { font-size: 1.5rem; margin: .25rem 0 1rem; }
h1 small { font-weight: normal; color: var(--muted); font-size: .9rem; }
h2 { font-size: 1.1rem; margin: 0 0 .5rem; }
section { background: var(--card); border: 1px solid var(--border); border-radius: .5rem; padding: 1rem; margin-bottom: 1rem; }
#drop { display:block; border: 2px dashed var(--border); border-radius: .5rem; padding: 1.25rem; text-align: center; cursor: pointer; }
#drop.over, #drop:focus-within { border-color: var(--accent); outline: none; }
#drop strong { color: var(--accent); }
#file { position:absolute; width:1px; height:1px; opacity:0; }
#file-name { display:block; margin-top:.35rem; color: var(--muted); overflow-wrap:anywhere; }
.grid { display:grid; grid-template-columns: repeat(auto-fit, minmax(11rem, 1fr)); gap: .75rem; margin-top: 1rem; }
label.field { display:flex; flex-direction:column; gap:.2rem; font-size:.9rem; color: var(--muted); }
select, input[type=password], input[type=text], textarea { font: inherit; color: var(--fg); background: var(--bg);
  border:1px solid var(--border); border-radius:.35rem; padding:.4rem .5rem; }
textarea { min-height: 2.6rem; resize: vertical; }
.check { display:flex; align-items:center; gap:.4rem; font-size:.9rem; color: var(--muted); }
.actions { display:flex; gap:.5rem; flex-wrap:wrap; margin-top: 1rem; }
button { font: inherit; border-radius:.35rem; border:1px solid var(--accent); background: var(--accent); color:#fff; padding:.45rem 1rem; cursor:pointer; }
button.secondary { background: transparent; color: var(--accent); }
button:disabled { opacity:.45; cursor: not-allowed; }
button:focus-visible, select:focus-visible, input:focus-visible, textarea:focus-visible { outline: 3px solid var(--accent); outline-offset: 2px; }
.bar { display:grid; grid-template-columns: 7rem 1fr 4rem; align-items:center; gap:.5rem; font-size:.9rem; }
progress { width:100%; height: .9rem; }
#status { margin:.5rem 0 0; min-height:1.5em; }
body[data-state=done] #status { color: var(--ok); }
#error { background: var(--err-bg); color: var(--err-fg); border-radius:.35rem; padding:.6rem .8rem; margin-top:.5rem; white-space: pre-wrap; }
#segments { list-style:none; margin:0; padding:0; max-height: 26rem; overflow:auto; }
#segments li { display:flex; gap:.6rem; padding:.2rem 0; border-bottom: 1px solid var(--border); }
#segments li:last-child { border-bottom: 0; }
.ts { flex: none; font: .8rem/1.9 ui-monospace, monospace; color: var(--accent); background:none; border:0; padding:0 .2rem; }
#meta { color: var(--muted); font-size:.9rem; margin:.25rem 0 .5rem; }
audio { width:100%; margin:.25rem 0 .5rem; }
.sr-only { position:absolute; width:1px; height:1px; overflow:hidden; clip:rect(0 0 0 0); white-space:nowrap; }
</style>
</head>
<body data-state="idle">
<main>
<h1>Amanuensis <small>speech to text</small></h1>

<section aria-labelledby="h-input">
<h2 id="h-input">Audio or video file</h2>
<form id="form" novalidate>
<label id="drop" for="file">
  <strong>Choose a file</strong> or drop it here
  <input id="file" name="file" type="file" accept="audio/*,video/*,.wav,.mp3,.m4a,.ogg,.opus,.flac,.webm,.mp4,.mkv,.mov">
  <span id="file-name">No file chosen</span>
</label>
<div class="grid">
  <label class="field">Task
    <select id="task" name="task">
      <option value="transcribe">Transcribe</option>
      <option value="translate">Translate to English</option>
    </select>
  </label>
  <label class="field">Language
    <select id="language" name="language">
      <option value="">Auto-detect</option>
<!--LANGUAGES-->
    </select>
  </label>
  <label class="field">Model
    <select id="model" name="model"><option value="whisper-1">whisper-1</option></select>
  </label>
  <label class="field">API key (kept in this browser)
    <input id="api-key" type="password" autocomplete="off" spellcheck="false" placeholder="none">
  </label>
</div>
<div class="grid">
  <label class="field">Prompt (optional: names, spelling, style)
    <textarea id="prompt" name="prompt" rows="1"></textarea>
  </label>
  <label class="check"><input id="words" type="checkbox"> Word timestamps in the JSON</label>
</div>
<div class="actions">
  <button id="start" type="submit" disabled>Transcribe</button>
  <button id="cancel" type="button" class="secondary" disabled>Cancel</button>
</div>
</form>
</section>

<section aria-labelledby="h-progress">
<h2 id="h-progress">Progress</h2>
<div class="bar"><label for="upload-progress">Upload</label><progress id="upload-progress" max="1" value="0"></progress><span id="upload-pct">0%</span></div>
<div class="bar"><label for="decode-progress">Transcription</label><progress id="decode-progress" max="1" value="0"></progress><span id="decode-pct">0%</span></div>
<p id="status" role="status" aria-live="polite">Choose a file to start.</p>
<div id="error" role="alert" hidden></div>
</section>

<section aria-labelledby="h-result">
<h2 id="h-result">Transcript</h2>
<audio id="player" controls hidden></audio>
<p id="meta"></p>
<ol id="segments" aria-live="polite"></ol>
<div class="actions" role="group" aria-label="Download the transcript">
  <button id="dl-txt" type="button" class="secondary" disabled>Download .txt</button>
  <button id="dl-srt" type="button" class="secondary" disabled>Download .srt</button>
  <button id="dl-vtt" type="button" class="secondary" disabled>Download .vtt</button>
  <button id="dl-json" type="button" class="secondary" disabled>Download .json</button>
</div>
</section>
</main>

<script>
(() => {
'use strict';
const $ = (id) => document.getElementById(id);
const form = $('form'), fileInput = $('file'), drop = $('drop'), fileName = $('file-name');
const task = $('task'), language = $('language'), model = $('model'), apiKey = $('api-key');
const prompt = $('prompt'), wantWords = $('words'), startBtn = $('start'), cancelBtn = $('cancel');
const upBar = $('upload-progress'), upPct = $('upload-pct'), decBar = $('decode-progress'), decPct = $('decode-pct');
const statusEl = $('status'), errorEl = $('error'), segList = $('segments'), meta = $('meta'), player = $('player');
const dlButtons = { txt: $('dl-txt'), srt: $('dl-srt'), vtt: $('dl-vtt'), json: $('dl-json') };
const KEY_STORE = 'amanuensis.apiKey';

let file = null, duration = NaN, mediaUrl = null, xhr = null;
let segments = [];   // {start, end, text} as they arrive; start/end may be undefined
let result = null;   // the finished transcript: {text, segments, words, language, duration, task, raw}
let request = null;  // what was sent: {file, task, language, model, prompt}

try { apiKey.value = localStorage.getItem(KEY_STORE) || ''; } catch (e) { /* storage disabled */ }
apiKey.addEventListener('input', () => {
  try { localStorage.setItem(KEY_STORE, apiKey.value.trim()); } catch (e) { /* storage disabled */ }
});
apiKey.addEventListener('change', loadModels);

function setState(state, message) {
  document.body.dataset.state = state;
  if (message !== undefined) statusEl.textContent = message;
  const busy = state === 'uploading' || state === 'decoding';
  startBtn.disabled = busy || !file;
  cancelBtn.disabled = !busy;
  for (const b of Object.values(dlButtons)) b.disabled = busy || !result;
}
function showError(message) {
  errorEl.textContent = message;
  errorEl.hidden = false;
  setState('error', 'Failed.');
}
function clearError() { errorEl.hidden = true; errorEl.textContent = ''; }

function auth(x) {
  const k = apiKey.value.trim();
  if (k) x.setRequestHeader('Authorization', 'Bearer ' + k);
}
function authHeaders() {
  const k = apiKey.value.trim();
  return k ? { Authorization: 'Bearer ' + k } : {};
}
// The server's OpenAI-shaped {"error": {"message": ...}}, or whatever came back.
function errorText(status, body) {
  let message = '';
  try {
    const j = JSON.parse(body);
    if (j && j.error) message = typeof j.error === 'string' ? j.error : (j.error.message || JSON.stringify(j.error));
  } catch (e) { message = (body || '').trim().slice(0, 500); }
  if (status === 0) return 'Could not reach the server' + (message ? ': ' + message : '.');
  return 'HTTP ' + status + (message ? ': ' + message : '');
}

async function loadModels() {
  try {
    const r = await fetch('/v1/models', { headers: authHeaders() });
    if (r.status === 401 && document.body.dataset.state === 'idle') {
      statusEl.textContent = apiKey.value.trim() ? 'The server does not accept this API key.'
                                                 : 'This server needs an API key: enter it above.';
    }
    if (!r.ok) return;
    const j = await r.json();
    const ids = (j.data || []).map((m) => m.id).filter((id) => typeof id === 'string');
    if (!ids.length) return;
    const keep = model.value;
    model.replaceChildren(...ids.map((id) => new Option(id, id)));
    if (ids.includes(keep)) model.value = keep;
  } catch (e) { /* the default model name stays */ }
}
loadModels();

// ---- choosing a file ----
function pickFile(f) {
  if (!f) return;
  file = f;
  result = null;
  fileName.textContent = f.name + ' (' + formatSize(f.size) + ')';
  duration = NaN;
  if (mediaUrl) URL.revokeObjectURL(mediaUrl);
  mediaUrl = URL.createObjectURL(f);
  player.src = mediaUrl;
  player.hidden = false;
  player.addEventListener('loadedmetadata', () => {
    if (Number.isFinite(player.duration)) duration = player.duration;
  }, { once: true });
  clearError();
  setState('idle', 'Ready: press ' + startBtn.textContent + '.');
}
function formatSize(n) {
  if (n < 1024) return n + ' B';
  if (n < 1048576) return (n / 1024).toFixed(1) + ' KB';
  return (n / 1048576).toFixed(1) + ' MB';
}
fileInput.addEventListener('change', () => pickFile(fileInput.files[0]));
for (const ev of ['dragenter', 'dragover']) {
  drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.add('over'); });
}
for (const ev of ['dragleave', 'drop']) drop.addEventListener(ev, () => drop.classList.remove('over'));
drop.addEventListener('drop', (e) => { e.preventDefault(); pickFile(e.dataTransfer.files[0]); });
// A file dropped anywhere else must not navigate away from the page.
window.addEventListener('dragover', (e) => e.preventDefault());
window.addEventListener('drop', (e) => { e.preventDefault(); if (e.dataTransfer.files.length) pickFile(e.dataTransfer.files[0]); });
task.addEventListener('change', () => {
  startBtn.textContent = task.value === 'translate' ? 'Translate' : 'Transcribe';
});

// ---- time formats ----
function clock(seconds, sep, alwaysHours) {
  let ms = Math.round(Math.max(0, Number(seconds) || 0) * 1000);
  const h = Math.floor(ms / 3600000); ms -= h * 3600000;
  const m = Math.floor(ms / 60000); ms -= m * 60000;
  const s = Math.floor(ms / 1000); ms -= s * 1000;
  const p = (v, n) => String(v).padStart(n, '0');
  return (alwaysHours || h ? p(h, 2) + ':' : '') + p(m, 2) + ':' + p(s, 2) + sep + p(ms, 3);
}
const timed = (s) => Number.isFinite(s.start) && Number.isFinite(s.end);

// ---- showing segments ----
function renderSegment(seg) {
  const li = document.createElement('li');
  if (timed(seg)) {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'ts';
    b.textContent = clock(seg.start, '.', false).slice(0, -2);
    b.title = 'Play from ' + clock(seg.start, '.', false);
    b.setAttribute('aria-label', 'Play from ' + clock(seg.start, '.', false));
    b.addEventListener('click', () => { player.currentTime = seg.start; player.play().catch(() => {}); });
    li.append(b);
  }
  const span = document.createElement('span');
  span.className = 'text';
  span.textContent = seg.text.trim();
  li.append(span);
  segList.append(li);
  li.scrollIntoView({ block: 'nearest' });
}
function renderAll(list) {
  segList.replaceChildren();
  for (const s of list) renderSegment(s);
}
function decodeProgress(fraction) {
  if (fraction === null) {  // unknown: an indeterminate bar
    decBar.removeAttribute('value');
    decPct.textContent = '…';
  } else {
    const f = Math.min(1, Math.max(0, fraction));
    decBar.value = f;
    decPct.textContent = Math.round(f * 100) + '%';
  }
}

// ---- the request ----
form.addEventListener('submit', (e) => {
  e.preventDefault();
  if (!file || xhr) return;
  start();
});
cancelBtn.addEventListener('click', () => {
  if (xhr) { xhr.abort(); xhr = null; }
  setState('idle', 'Cancelled.');
});

function formFor(req, format, stream) {
  const fd = new FormData();
  fd.append('file', req.file, req.file.name);
  fd.append('model', req.model);
  if (req.task === 'transcribe' && req.language) fd.append('language', req.language);
  if (req.prompt) fd.append('prompt', req.prompt);
  fd.append('response_format', format);
  if (format === 'verbose_json') {
    fd.append('timestamp_granularities[]', 'segment');
    if (req.words) fd.append('timestamp_granularities[]', 'word');
  }
  if (stream) fd.append('stream', 'true');
  return fd;
}
function endpoint(req) {
  return req.task === 'translate' ? '/v1/audio/translations' : '/v1/audio/transcriptions';
}

function start() {
  clearError();
  segments = [];
  result = null;
  segList.replaceChildren();
  meta.textContent = '';
  request = { file, task: task.value, language: language.value, model: model.value,
              prompt: prompt.value.trim(), words: wantWords.checked };
  upBar.value = 0; upPct.textContent = '0%';
  decodeProgress(0);
  setState('uploading', 'Uploading ' + file.name + '…');

  const x = new XMLHttpRequest();
  xhr = x;
  let seen = 0, pending = '', final = null, streamError = null;
  x.open('POST', endpoint(request));
  auth(x);
  x.setRequestHeader('Accept', 'text/event-stream, application/json');
  x.upload.addEventListener('progress', (e) => {
    if (!e.lengthComputable) return;
    const f = e.loaded / e.total;
    upBar.value = f;
    upPct.textContent = Math.round(f * 100) + '%';
  });
  x.upload.addEventListener('load', () => {
    upBar.value = 1; upPct.textContent = '100%';
    if (xhr === x) {
      setState('decoding', (request.task === 'translate' ? 'Translating' : 'Transcribing') + '…');
      if (!Number.isFinite(duration)) decodeProgress(null);
    }
  });
  const isStream = () => (x.getResponseHeader('Content-Type') || '').includes('text/event-stream');
  // Server-sent events: blocks separated by a blank line, "data: {json}" lines.
  const feed = (flush) => {
    pending += x.responseText.slice(seen);
    seen = x.responseText.length;
    const re = /\r?\n\r?\n/g;
    let at = 0, m;
    while ((m = re.exec(pending))) { handleBlock(pending.slice(at, m.index)); at = m.index + m[0].length; }
    pending = pending.slice(at);
    if (flush && pending.trim()) { handleBlock(pending); pending = ''; }
  };
  const handleBlock = (block) => {
    let name = '', data = [];
    for (const line of block.split(/\r?\n/)) {
      if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      else if (line.startsWith('event:')) name = line.slice(6).trim();
    }
    const text = data.join('\n');
    if (!text || text === '[DONE]') return;
    let ev;
    try { ev = JSON.parse(text); } catch (e) { return; }
    const type = ev.type || name;
    if (type === 'transcript.text.delta') {
      const s = ev.segment || ev;
      const seg = { text: String(ev.delta ?? s.text ?? ''), start: num(s.start), end: num(s.end), raw: s };
      segments.push(seg);
      renderSegment(seg);
      if (Number.isFinite(seg.end) && Number.isFinite(duration) && duration > 0) decodeProgress(seg.end / duration);
      statusEl.textContent = (request.task === 'translate' ? 'Translating' : 'Transcribing') + '… ' +
          segments.length + (segments.length === 1 ? ' segment' : ' segments');
    } else if (type === 'transcript.text.done') {
      final = ev;
    } else if (type === 'error' || ev.error) {
      const er = ev.error || ev;
      streamError = typeof er === 'string' ? er : (er.message || JSON.stringify(er));
    }
  };
  x.addEventListener('progress', () => { if (x.status === 200 && isStream()) feed(false); });
  x.addEventListener('load', () => {
    if (xhr !== x) return;
    xhr = null;
    if (x.status < 200 || x.status >= 300) { showError(errorText(x.status, x.responseText)); return; }
    let raw;
    if (isStream()) {
      feed(true);
      if (streamError) { showError('The server stopped: ' + streamError); return; }
      if (!final) { showError('The stream ended before the transcript was done.'); return; }
      raw = final;
    } else {
      try { raw = JSON.parse(x.responseText); } catch (e) { raw = { text: x.responseText }; }
    }
    finish(raw);
  });
  x.addEventListener('error', () => {
    if (xhr !== x) return;
    xhr = null;
    showError(errorText(0, x.responseText));
  });
  // The server streams json or text; the events carry the segments.
  x.send(formFor(request, 'json', true));
}
function pick(o, keys) {
  const out = {};
  for (const k of keys) if (o && o[k] !== undefined) out[k] = o[k];
  return out;
}
function num(v) { return typeof v === 'number' ? v : (typeof v === 'string' && v !== '' ? Number(v) : undefined); }

// The finished transcript: segments with times from the final event when it
// has them (verbose_json), else the streamed ones.
function finish(raw) {
  const fromRaw = Array.isArray(raw.segments) ? raw.segments.map((s) => ({
    id: s.id, start: num(s.start), end: num(s.end), text: String(s.text ?? '') })) : [];
  const list = fromRaw.length ? fromRaw : segments;
  const text = typeof raw.text === 'string' ? raw.text.trim() : list.map((s) => s.text.trim()).join(' ');
  result = { text, segments: list, words: Array.isArray(raw.words) ? raw.words : undefined,
             language: raw.language, duration: num(raw.duration), task: raw.task || request.task, raw };
  if (fromRaw.length || !segments.length) renderAll(list.length ? list : [{ text }]);
  decodeProgress(1);
  const parts = [];
  if (result.language) parts.push('Language: ' + result.language);
  if (Number.isFinite(result.duration)) parts.push('Duration: ' + clock(result.duration, '.', false));
  parts.push(list.length + (list.length === 1 ? ' segment' : ' segments'));
  meta.textContent = parts.join(' · ');
  setState('done', 'Done.');
}

// ---- downloads ----
function subtitles(kind) {
  const cues = result.segments.filter((s) => s.text.trim() !== '');
  const sep = kind === 'srt' ? ',' : '.';
  const cue = (s) => clock(s.start, sep, true) + ' --> ' + clock(Math.max(s.end, s.start), sep, true) + '\n' +
      s.text.trim().replace(/-->/g, '->') + '\n';
  if (kind === 'srt') return cues.map((s, i) => (i + 1) + '\n' + cue(s)).join('\n');
  return 'WEBVTT\n\n' + cues.map(cue).join('\n');
}
function baseName() {
  const n = (request && request.file.name) || 'transcript';
  return n.replace(/\.[^.]*$/, '') || 'transcript';
}
function save(content, ext, type) {
  const blob = new Blob([content], { type: type + ';charset=utf-8' });
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = baseName() + '.' + ext;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 30000);
}
// Formats that need times the stream did not carry come from the server.
function fromServer(format, ext, type) {
  const x = new XMLHttpRequest();
  x.open('POST', endpoint(request));
  auth(x);
  setState('decoding', 'Fetching the ' + ext + ' file from the server…');
  decodeProgress(null);
  x.addEventListener('load', () => {
    if (x.status < 200 || x.status >= 300) { showError(errorText(x.status, x.responseText)); return; }
    save(x.responseText, ext, type);
    decodeProgress(1);
    setState('done', 'Done.');
  });
  x.addEventListener('error', () => showError(errorText(0, x.responseText)));
  x.send(formFor(request, format, false));
}
function download(kind) {
  if (!result) return;
  const haveTimes = result.segments.length > 0 && result.segments.every(timed);
  if (kind === 'txt') {
    const lines = result.segments.length ? result.segments.map((s) => s.text.trim()).filter(Boolean) : [result.text];
    save(lines.join('\n') + '\n', 'txt', 'text/plain');
  } else if (kind === 'srt' || kind === 'vtt') {
    if (haveTimes) save(subtitles(kind), kind, kind === 'srt' ? 'application/x-subrip' : 'text/vtt');
    else fromServer(kind, kind, kind === 'srt' ? 'application/x-subrip' : 'text/vtt');
  } else if (kind === 'json') {
    if (haveTimes && !request.words) save(JSON.stringify(Array.isArray(result.raw.segments) ? result.raw : {
      task: result.task, language: result.language, duration: result.duration, text: result.text,
      segments: result.segments.map((s, i) => ({ id: i, start: s.start, end: s.end, text: s.text,
        ...pick(s.raw, ['avg_logprob', 'compression_ratio', 'no_speech_prob', 'temperature']) })) }, null, 2) + '\n',
      'json', 'application/json');
    else fromServer('verbose_json', 'json', 'application/json');
  }
}
for (const [kind, b] of Object.entries(dlButtons)) b.addEventListener('click', () => download(kind));
setState('idle');
})();
</script>
</body>
</html>
)AMA_HTML";

std::string capitalized(std::string_view s) {
  std::string out(s);
  if (!out.empty() && out[0] >= 'a' && out[0] <= 'z') out[0] = static_cast<char>(out[0] - 'a' + 'A');
  return out;
}

std::string build_page() {
  std::vector<LanguageInfo> langs = languages();
  std::sort(langs.begin(), langs.end(), [](const LanguageInfo& a, const LanguageInfo& b) { return a.name < b.name; });
  std::string options;
  for (const LanguageInfo& l : langs)
    options += "      <option value=\"" + std::string(l.code) + "\">" + capitalized(l.name) + " (" +
               std::string(l.code) + ")</option>\n";
  std::string page(kPage);
  const std::string_view marker = "<!--LANGUAGES-->\n";
  if (const size_t at = page.find(marker); at != std::string::npos) page.replace(at, marker.size(), options);
  return page;
}

}  // namespace

std::string_view web_page_html() {
  static const std::string page = build_page();
  return page;
}

}  // namespace ama::server
