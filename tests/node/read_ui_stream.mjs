// Reads one of our UI message streams with the AI SDK's own parser and message assembly, and
// prints what it made of it as JSON (tests/test_ui_stream_sdk.py asserts on that).
//
//   node read_ui_stream.mjs stream <url>            GET, as a client of /ui-stream
//   node read_ui_stream.mjs chat <api> <body.json>  DefaultChatTransport.sendMessages
//   node read_ui_stream.mjs resume <api> <chatId>   DefaultChatTransport.reconnectToStream
//   node read_ui_stream.mjs file <frames.txt>       frames saved from streams (a resume's pieces)
//
// Env: TOKEN (bearer), LAST_EVENT_ID (stream mode). Every chunk is also checked against the
// keys the SDK's uiMessageChunkSchema declares for its type (the schema itself lets extra keys
// through), read from the installed package's source.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import {
  DefaultChatTransport,
  parseJsonEventStream,
  readUIMessageStream,
  uiMessageChunkSchema,
} from 'ai';

const [mode, target, extra] = process.argv.slice(2);
const headers = { Authorization: `Bearer ${process.env.TOKEN}` };
const out = { status: null, headers: {}, frames: [], chunks: [], errors: [], message: null };

// Each `z.looseObject({...})` of the schema: its `type` and the keys it names.
function declaredKeys() {
  const source = readFileSync(fileURLToPath(import.meta.resolve('ai')), 'utf8');
  const start = source.indexOf('var uiMessageChunkSchema = ');
  const end = source.indexOf('function isDataUIMessageChunk', start);
  if (start < 0 || end < 0) throw new Error('uiMessageChunkSchema not found in the ai package');
  const keys = {};
  for (const block of source.slice(start, end).split(/z\d*\.looseObject\(\{/).slice(1)) {
    const literal = block.match(/type: z\d*\.literal\("([^"]+)"\)/);
    const name = literal ? literal[1] : 'data-*';
    keys[name] = [...block.matchAll(/^\s*(\w+): /gm)].map((m) => m[1]);
  }
  if (Object.keys(keys).length < 20) throw new Error('the chunk schema was not read whole');
  return keys;
}
const KEYS = declaredKeys();

function checkKeys(chunk) {
  const allowed = KEYS[chunk.type] ?? (chunk.type?.startsWith('data-') ? KEYS['data-*'] : null);
  if (!allowed) return out.errors.push(`unknown chunk type ${chunk.type}`);
  for (const key of Object.keys(chunk)) {
    if (!allowed.includes(key)) out.errors.push(`chunk ${chunk.type} has a key ${key}`);
  }
}

// The raw frames as they came, beside what the SDK reads (a tee of the body).
async function recordFrames(body) {
  const text = await new Response(body).text();
  for (const block of text.split('\n\n')) {
    const lines = block.split('\n').filter((line) => line && !line.startsWith(':'));
    if (!lines.length) continue;
    const id = lines.find((l) => l.startsWith('id: '))?.slice(4) ?? null;
    const data = lines.find((l) => l.startsWith('data: '))?.slice(6) ?? null;
    out.frames.push({ id, data });
    if (data && data !== '[DONE]') checkKeys(JSON.parse(data));
  }
}

const pending = [];
async function teeFetch(input, init) {
  const response = await fetch(input, init);
  out.status = response.status;
  out.headers = Object.fromEntries(response.headers.entries());
  if (!response.body) return response;
  const [mine, theirs] = response.body.tee();
  pending.push(recordFrames(mine));
  return new Response(theirs, { status: response.status, headers: response.headers });
}

async function assemble(chunks) {
  const seen = chunks.pipeThrough(
    new TransformStream({
      transform(chunk, controller) {
        out.chunks.push(chunk);
        controller.enqueue(chunk);
      },
    }),
  );
  const onError = (error) => out.errors.push(`onError: ${error.message ?? error}`);
  for await (const message of readUIMessageStream({ stream: seen, onError })) {
    out.message = message;
  }
}

async function parseAndAssemble(body) {
  const parsed = parseJsonEventStream({ stream: body, schema: uiMessageChunkSchema() });
  const chunks = parsed.pipeThrough(
    new TransformStream({
      transform(result, controller) {
        if (result.success) controller.enqueue(result.value);
        else out.errors.push(`invalid chunk: ${result.error.message}`);
      },
    }),
  );
  await assemble(chunks);
}

try {
  if (mode === 'stream') {
    if (process.env.LAST_EVENT_ID) headers['Last-Event-ID'] = process.env.LAST_EVENT_ID;
    const response = await teeFetch(target, { headers });
    if (response.ok) await parseAndAssemble(response.body);
  } else if (mode === 'file') {
    const text = readFileSync(target, 'utf8');
    pending.push(recordFrames(new Response(text).body));
    await parseAndAssemble(new Response(text).body);
  } else {
    // As the README's client configures it: the token in headers, only the last message sent.
    const transport = new DefaultChatTransport({
      api: target,
      headers,
      fetch: teeFetch,
      prepareSendMessagesRequest: ({ id, messages }) => ({
        body: { id, messages: messages.slice(-1) },
      }),
    });
    if (mode === 'chat') {
      const body = JSON.parse(readFileSync(extra, 'utf8'));
      const chunks = await transport.sendMessages({
        trigger: 'submit-message',
        chatId: body.id,
        messageId: undefined,
        messages: body.messages,
        abortSignal: undefined,
      });
      await assemble(chunks);
    } else if (mode === 'resume') {
      const chunks = await transport.reconnectToStream({ chatId: extra });
      if (chunks) await assemble(chunks);
    } else {
      throw new Error(`unknown mode ${mode}`);
    }
  }
} catch (error) {
  out.errors.push(`thrown: ${error.message ?? error}`);
}
await Promise.all(pending);
process.stdout.write(JSON.stringify(out));
