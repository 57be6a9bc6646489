// OpenAI's official Node SDK against `amanuensis serve`: every response is
// checked for the shape the SDK's types promise, so that any drift from
// OpenAI's API fails here. Run: AMA_SERVER_URL=http://127.0.0.1:PORT node --test openai_sdk.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import OpenAI from 'openai';
import { serverUrl, audioPath, audioSeconds, parseSrt, parseVtt } from './common.mjs';

// The server runs with --api-key test (tests/test_clients.cpp).
const apiKey = process.env.AMA_API_KEY || 'test';
const client = new OpenAI({ baseURL: serverUrl + '/v1', apiKey, maxRetries: 0, timeout: 300_000 });
const audio = () => fs.createReadStream(audioPath);
const model = 'whisper-1';
const eps = 0.02;  // times are rounded to milliseconds

const isInt = (v) => Number.isInteger(v);
const isNum = (v) => typeof v === 'number' && Number.isFinite(v);

// openai.resources.audio.TranscriptionSegment (the same for translations).
function checkSegment(s, i, duration) {
  const where = `segments[${i}]`;
  assert.equal(typeof s, 'object', `${where} is not an object`);
  assert.ok(isInt(s.id), `${where}.id is not an integer: ${s.id}`);
  assert.ok(isInt(s.seek) && s.seek >= 0, `${where}.seek is not a non-negative integer: ${s.seek}`);
  assert.ok(isNum(s.start) && isNum(s.end), `${where}: start/end are not numbers: ${s.start}, ${s.end}`);
  assert.ok(s.start >= 0 && s.start <= s.end, `${where}: start ${s.start} end ${s.end}`);
  assert.ok(s.end <= duration + eps, `${where}.end ${s.end} is past the duration ${duration}`);
  assert.equal(typeof s.text, 'string', `${where}.text is not a string`);
  assert.ok(Array.isArray(s.tokens) && s.tokens.every(isInt), `${where}.tokens is not an array of integers`);
  assert.ok(isNum(s.temperature), `${where}.temperature is not a number`);
  assert.ok(isNum(s.avg_logprob) && s.avg_logprob <= 0, `${where}.avg_logprob is not a log-probability: ${s.avg_logprob}`);
  assert.ok(isNum(s.compression_ratio) && s.compression_ratio >= 0, `${where}.compression_ratio: ${s.compression_ratio}`);
  assert.ok(isNum(s.no_speech_prob) && s.no_speech_prob >= 0 && s.no_speech_prob <= 1,
            `${where}.no_speech_prob is not a probability: ${s.no_speech_prob}`);
}

// openai.resources.audio.TranscriptionVerbose / TranslationVerbose.
function checkVerbose(r, { words }) {
  assert.equal(typeof r, 'object', 'verbose_json is not an object');
  assert.equal(typeof r.text, 'string', 'text is not a string');
  assert.ok(r.text.length > 0, 'text is empty');
  assert.equal(typeof r.language, 'string', 'language is not a string');
  assert.ok(r.language.length > 0, 'language is empty');
  assert.ok(isNum(r.duration), `duration is not a number: ${JSON.stringify(r.duration)}`);
  assert.ok(Math.abs(r.duration - audioSeconds) < 0.05, `duration ${r.duration}, the file has ${audioSeconds} s`);
  assert.ok(Array.isArray(r.segments) && r.segments.length > 0, 'segments is not a non-empty array');
  r.segments.forEach((s, i) => checkSegment(s, i, r.duration));
  for (let i = 1; i < r.segments.length; ++i) {
    assert.ok(r.segments[i].start >= r.segments[i - 1].start - eps, `segments[${i}] starts before segments[${i - 1}]`);
  }
  assert.equal(r.text.trim(), r.segments.map((s) => s.text).join('').trim(), 'text is not the segments\' texts joined');
  if (words) {
    assert.ok(Array.isArray(r.words) && r.words.length > 0, 'timestamp_granularities word: words is not a non-empty array');
    r.words.forEach((w, i) => {
      assert.equal(typeof w.word, 'string', `words[${i}].word is not a string`);
      assert.ok(isNum(w.start) && isNum(w.end) && w.start >= 0 && w.start <= w.end && w.end <= r.duration + eps,
                `words[${i}]: start ${w.start} end ${w.end}`);
      if (i > 0) assert.ok(w.start >= r.words[i - 1].start - eps, `words[${i}] starts before words[${i - 1}]`);
    });
  }
}

test('models.list', async () => {
  const page = await client.models.list();
  assert.ok(Array.isArray(page.data) && page.data.length > 0, 'no models');
  for (const m of page.data) {
    assert.equal(typeof m.id, 'string');
    assert.equal(m.object, 'model');
    assert.ok(isInt(m.created), `created is not an integer: ${m.created}`);
    assert.equal(typeof m.owned_by, 'string');
  }
});

for (const kind of ['transcriptions', 'translations']) {
  const api = client.audio[kind];
  const task = kind === 'translations' ? 'translate' : 'transcribe';

  test(`${kind}.create json (the default)`, async () => {
    const r = await api.create({ file: audio(), model });
    assert.equal(typeof r, 'object', `not an object: ${JSON.stringify(r)}`);
    assert.equal(typeof r.text, 'string', 'text is not a string');
    assert.ok(r.text.length > 0, 'text is empty');
  });

  test(`${kind}.create json with language/prompt/temperature`, async () => {
    const params = { file: audio(), model, response_format: 'json', prompt: 'President Kennedy.', temperature: 0 };
    if (kind === 'transcriptions') params.language = 'en';
    const r = await api.create(params);
    assert.equal(typeof r.text, 'string');
    assert.ok(r.text.length > 0, 'text is empty');
  });

  test(`${kind}.create verbose_json`, async () => {
    const params = { file: audio(), model, response_format: 'verbose_json' };
    // OpenAI's translations take no timestamp_granularities.
    if (kind === 'transcriptions') params.timestamp_granularities = ['word', 'segment'];
    const r = await api.create(params);
    checkVerbose(r, { words: kind === 'transcriptions' });
    if (r.task !== undefined) assert.equal(r.task, task);
  });

  test(`${kind}.create srt`, async () => {
    const r = await api.create({ file: audio(), model, response_format: 'srt' });
    assert.equal(typeof r, 'string', `srt is not a string: ${typeof r}`);
    const cues = parseSrt(r);
    assert.ok(cues.length >= 1, 'no cues');
    assert.ok(cues.at(-1).end <= audioSeconds + eps, `last cue ends at ${cues.at(-1).end}`);
  });

  test(`${kind}.create vtt`, async () => {
    const r = await api.create({ file: audio(), model, response_format: 'vtt' });
    assert.equal(typeof r, 'string', `vtt is not a string: ${typeof r}`);
    assert.ok(parseVtt(r).length >= 1, 'no cues');
  });

  test(`${kind}.create text`, async () => {
    const r = await api.create({ file: audio(), model, response_format: 'text' });
    assert.equal(typeof r, 'string', `text is not a string: ${typeof r}`);
    assert.ok(r.trim().length > 0, 'text is empty');
    assert.ok(!r.trimStart().startsWith('{'), `text looks like JSON: ${r.slice(0, 80)}`);
  });
}

test('transcriptions.create segment granularity only: no words', async () => {
  const r = await client.audio.transcriptions.create({
    file: audio(), model, response_format: 'verbose_json', timestamp_granularities: ['segment'] });
  checkVerbose(r, { words: false });
  assert.ok(r.words === undefined || (Array.isArray(r.words) && r.words.length === 0),
            'words came back without timestamp_granularities word');
});

test('transcriptions.create stream: text deltas, then done', async () => {
  const stream = await client.audio.transcriptions.create({ file: audio(), model, stream: true });
  const deltas = [];
  let done = null;
  for await (const ev of stream) {
    assert.equal(done, null, `an event after transcript.text.done: ${JSON.stringify(ev)}`);
    if (ev.type === 'transcript.text.delta') {
      assert.equal(typeof ev.delta, 'string', `delta is not a string: ${JSON.stringify(ev)}`);
      deltas.push(ev.delta);
    } else if (ev.type === 'transcript.text.done') {
      done = ev;
    } else {
      assert.fail(`unknown event type: ${JSON.stringify(ev)}`);
    }
  }
  assert.ok(done, 'no transcript.text.done event');
  assert.equal(typeof done.text, 'string');
  assert.ok(done.text.length > 0, 'done.text is empty');
  assert.ok(deltas.length >= 1, 'no transcript.text.delta event');
  assert.equal(deltas.join('').trim(), done.text.trim(), 'the deltas do not add up to the final text');
});

test('errors come back as OpenAI API errors', async () => {
  // Not audio at all.
  await assert.rejects(
    client.audio.transcriptions.create({ file: new File(['this is not audio'], 'notes.wav'), model }),
    (e) => {
      assert.ok(e instanceof OpenAI.APIError, `not an APIError: ${e}`);
      assert.ok(e.status >= 400 && e.status < 500, `status ${e.status}`);
      assert.equal(typeof e.error?.message, 'string', `no error.message: ${JSON.stringify(e.error)}`);
      assert.ok(e.error.message.length > 0);
      return true;
    });
  // An unknown response format.
  await assert.rejects(
    client.audio.transcriptions.create({ file: audio(), model, response_format: 'xml' }),
    (e) => {
      assert.ok(e instanceof OpenAI.BadRequestError, `not a 400 BadRequestError: ${e} (status ${e.status})`);
      assert.match(e.error?.message ?? '', /response_format|xml/i);
      return true;
    });
});

test('a wrong API key is an AuthenticationError (401)', async () => {
  const wrong = new OpenAI({ baseURL: serverUrl + '/v1', apiKey: apiKey + '-wrong', maxRetries: 0 });
  await assert.rejects(wrong.models.list(), (e) => {
    assert.ok(e instanceof OpenAI.AuthenticationError, `not an AuthenticationError: ${e} (status ${e.status})`);
    assert.equal(typeof e.error?.message, 'string');
    return true;
  });
  await assert.rejects(wrong.audio.transcriptions.create({ file: audio(), model }), OpenAI.AuthenticationError);
});
