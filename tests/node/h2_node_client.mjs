// HTTP/2 client for tests/http2/test_h2_clients.py, on Node's built-in http2 module.
//
//   node tests/h2_node_client.mjs BASE_URL
//
// Opens one session (prior knowledge for http://, ALPN h2 for https://, the
// certificate not verified), sends several requests on it at once, including
// a POST with a body, and prints one JSON object with what came back.

import { createHash } from "node:crypto";
import http2 from "node:http2";

const base = process.argv[2];
const UPLOAD = Buffer.alloc(200_000, "n");

const session = http2.connect(base, { rejectUnauthorized: false });
session.on("error", (err) => {
  console.error(`session error: ${err}`);
  process.exit(2);
});

function request(path, { method = "GET", body = null } = {}) {
  return new Promise((resolve, reject) => {
    const req = session.request({ ":method": method, ":path": path }, { endStream: body === null });
    const chunks = [];
    let headers = null;
    req.on("response", (h) => {
      headers = h;
    });
    req.on("data", (chunk) => chunks.push(chunk));
    req.on("end", () => {
      const data = Buffer.concat(chunks);
      resolve({
        path,
        method,
        status: headers[":status"],
        headers: Object.fromEntries(Object.entries(headers).filter(([k]) => !k.startsWith(":"))),
        length: data.length,
        sha256: createHash("sha256").update(data).digest("hex"),
        text: data.length <= 4096 ? data.toString("latin1") : null,
        dataChunks: chunks.length,
      });
    });
    req.on("error", reject);
    if (body !== null) {
      req.end(body);
    }
  });
}

try {
  const results = await Promise.all([
    request("/json?first"),
    request("/stream"),
    request("/echo", { method: "POST", body: UPLOAD }),
    request("/hello"),
    request("/json?second"),
  ]);
  const out = {
    alpnProtocol: session.alpnProtocol ?? null,
    encrypted: Boolean(session.encrypted),
    uploadSha256: createHash("sha256").update(UPLOAD).digest("hex"),
    uploadLength: UPLOAD.length,
    results,
  };
  console.log(JSON.stringify(out));
} catch (err) {
  console.error(`request failed: ${err}`);
  process.exitCode = 1;
} finally {
  session.close();
}
