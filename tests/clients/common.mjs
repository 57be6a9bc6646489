// What the client tests share: where the server and the audio are, and a
// strict SRT/WebVTT reader. tests/test_clients.cpp sets the environment.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

// http://127.0.0.1:PORT, no trailing slash.
export const serverUrl = (() => {
  const u = process.env.AMA_SERVER_URL;
  if (!u) throw new Error('AMA_SERVER_URL is not set: start `amanuensis serve` and set it to http://127.0.0.1:PORT');
  return u.replace(/\/+$/, '');
})();

// 11 s of real speech (JFK), 16 kHz mono PCM WAV.
export const audioPath = process.env.AMA_AUDIO || path.resolve(here, '../../../shared/audio/jfk.wav');
export const audioSeconds = 11.0;

// Where screenshots and downloads are kept.
export const artifactDir = (() => {
  const d = process.env.AMA_ARTIFACT_DIR || fs.mkdtempSync(path.join(os.tmpdir(), 'ama-clients-'));
  fs.mkdirSync(d, { recursive: true });
  return d;
})();

const srtTime = /^(\d{2,}):([0-5]\d):([0-5]\d),(\d{3})$/;
const vttTime = /^(?:(\d{2,}):)?([0-5]\d):([0-5]\d)\.(\d{3})$/;

function seconds(m) {
  return (m[1] ? Number(m[1]) * 3600 : 0) + Number(m[2]) * 60 + Number(m[3]) + Number(m[4]) / 1000;
}

// Parses SubRip strictly: cues numbered 1, 2, ... in order, "HH:MM:SS,mmm --> HH:MM:SS,mmm",
// start <= end, at least one non-empty text line, cues separated by one blank line.
// Returns [{index, start, end, text}]; throws (assert) on anything else.
export function parseSrt(content) {
  assert.equal(typeof content, 'string', 'SRT is not a string');
  const body = content.replace(/^\uFEFF/, '').replace(/\r\n/g, '\n');
  assert.ok(body.trim().length > 0, 'SRT is empty');
  const blocks = body.trim().split(/\n\n+/);
  return blocks.map((block, i) => {
    const lines = block.split('\n');
    assert.ok(lines.length >= 3, `SRT cue ${i + 1} has fewer than 3 lines: ${JSON.stringify(block)}`);
    assert.equal(lines[0], String(i + 1), `SRT cue ${i + 1}: the index line is ${JSON.stringify(lines[0])}`);
    const times = lines[1].split(' --> ');
    assert.equal(times.length, 2, `SRT cue ${i + 1}: bad time line ${JSON.stringify(lines[1])}`);
    const a = srtTime.exec(times[0]), b = srtTime.exec(times[1]);
    assert.ok(a && b, `SRT cue ${i + 1}: bad timestamps ${JSON.stringify(lines[1])}`);
    const start = seconds(a), end = seconds(b);
    assert.ok(start <= end, `SRT cue ${i + 1}: start ${start} after end ${end}`);
    const text = lines.slice(2).join('\n');
    assert.ok(text.trim().length > 0, `SRT cue ${i + 1} has no text`);
    assert.ok(!text.includes('-->'), `SRT cue ${i + 1}: text contains the arrow`);
    return { index: i + 1, start, end, text };
  });
}

// Parses WebVTT: "WEBVTT" header, then cues "[HH:]MM:SS.mmm --> [HH:]MM:SS.mmm" + text.
export function parseVtt(content) {
  assert.equal(typeof content, 'string', 'WebVTT is not a string');
  const body = content.replace(/^\uFEFF/, '').replace(/\r\n/g, '\n');
  assert.match(body, /^WEBVTT(?:[ \t][^\n]*)?\n/, 'WebVTT does not start with the WEBVTT line');
  const blocks = body.trim().split(/\n\n+/).slice(1);
  return blocks.filter((b) => !/^(NOTE|STYLE|REGION)\b/.test(b)).map((block, i) => {
    const lines = block.split('\n');
    const t = lines.findIndex((l) => l.includes('-->'));
    assert.ok(t === 0 || t === 1, `WebVTT cue ${i + 1}: no time line in ${JSON.stringify(block)}`);
    const [from, rest] = lines[t].split(' --> ');
    const a = vttTime.exec(from), b = vttTime.exec((rest || '').split(/\s+/)[0]);
    assert.ok(a && b, `WebVTT cue ${i + 1}: bad timestamps ${JSON.stringify(lines[t])}`);
    const start = seconds(a), end = seconds(b);
    assert.ok(start <= end, `WebVTT cue ${i + 1}: start ${start} after end ${end}`);
    const text = lines.slice(t + 1).join('\n');
    assert.ok(text.trim().length > 0, `WebVTT cue ${i + 1} has no text`);
    return { start, end, text };
  });
}
