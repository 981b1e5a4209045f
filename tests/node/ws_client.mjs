// WebSocket client for tests/websocket/test_websocket.py, on the `ws` package (what
// Node servers and tools use; the same handshake and framing rules a browser
// enforces: it fails the connection on any protocol error from the server).
//
//   node tests/node/ws_client.mjs URL
//
// Offers a subprotocol and permessage-deflate, sends a text, a large text, a
// binary message and a message in fragments, then closes with 4000; prints
// one JSON object with what it saw.

import { createHash } from "node:crypto";
import WebSocket from "ws";

const url = process.argv[2];
const BIG = "node ".repeat(200_000);
const BLOB = Buffer.alloc(300_000);
for (let i = 0; i < BLOB.length; i++) BLOB[i] = (i * 7) % 251;

const sha = (data) => createHash("sha256").update(data).digest("hex");
const ws = new WebSocket(url, ["chat", "superchat"], { perMessageDeflate: true });
const out = { messages: [] };
const replies = [];
let waiting = null;

function next() {
  return new Promise((resolve) => {
    if (replies.length) resolve(replies.shift());
    else waiting = resolve;
  });
}

ws.on("message", (data, isBinary) => {
  const item = { data, isBinary };
  if (waiting) {
    const resolve = waiting;
    waiting = null;
    resolve(item);
  } else replies.push(item);
});
ws.on("error", (err) => {
  console.error(`ws error: ${err}`);
  process.exit(2);
});
ws.on("close", (code, reason) => {
  out.close = { code, reason: reason.toString() };
  console.log(JSON.stringify(out));
});

ws.on("open", async () => {
  out.protocol = ws.protocol;
  out.extensions = ws.extensions;
  ws.send("hello from node");
  let got = await next();
  out.messages.push({ text: got.data.toString(), binary: got.isBinary });
  ws.send(BIG);
  got = await next();
  out.messages.push({ sha: sha(got.data), binary: got.isBinary, ok: sha(got.data) === sha(BIG) });
  ws.send(BLOB);
  got = await next();
  out.messages.push({ binary: got.isBinary, ok: Buffer.compare(got.data, BLOB) === 0 });
  ws.send("frag", { fin: false });
  ws.send("mented", { fin: true });
  got = await next();
  out.messages.push({ text: got.data.toString(), binary: got.isBinary });
  ws.close(4000, "node done");
});
