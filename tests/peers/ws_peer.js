// A Node `ws` peer for tests/network/test_ws_peers.py. Prints one line per fact on
// stdout; exits 0 when everything it checked held, 1 otherwise, 2 on its own timeout.
//
//   node ws_peer.js client URL [CA_FILE]
//       Sends a text, a small binary and an 8 MiB binary message; expects each echoed
//       with the same kind and content, in order; prints "RESULT ok" (or
//       "RESULT fail: why"), closes with 1000 and prints "CLOSED <code>" as the server
//       answered.
//   node ws_peer.js server [CERT_FILE KEY_FILE]
//       Listens on 127.0.0.1, port chosen by the OS (wss with a certificate) and prints
//       "LISTENING <port>"; echoes every message keeping its kind; prints
//       "PATH <request path>" per connection and "CLOSED <code> <reason>" when the first
//       client goes, then exits 0. On the path /greet-then-close it sends "welcome" and
//       closes with 4001 at once (a client turned away after the handshake), the 101
//       response, the message and the close frame corked into one write.
"use strict";

const fs = require("fs");
const http = require("http");
const https = require("https");
const { WebSocket, WebSocketServer } = require("ws");

const LIMIT = 64 * 1024 * 1024;
const say = (line) => process.stdout.write(line + "\n");

setTimeout(() => {
  say("RESULT fail: timeout");
  process.exit(2);
}, 30000).unref();

function client(url, caFile) {
  const text = "héllo ✓ from node";
  const small = Buffer.from(Array.from({ length: 256 }, (_v, i) => i));
  const big = Buffer.alloc(8 * 1024 * 1024);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7 + 3) & 0xff;
  const expected = [
    [text, false],
    [small, true],
    [big, true],
  ];
  const options = { maxPayload: LIMIT };
  if (caFile) options.ca = fs.readFileSync(caFile);
  const ws = new WebSocket(url, options);
  const problems = [];
  let echoes = 0;
  ws.on("open", () => {
    ws.send(text);
    ws.send(small);
    ws.send(big);
  });
  ws.on("message", (data, isBinary) => {
    const [want, wantBinary] = expected[echoes];
    echoes += 1;
    if (isBinary !== wantBinary) problems.push(`echo ${echoes}: binary=${isBinary}`);
    const same = wantBinary ? Buffer.compare(data, want) === 0 : data.toString("utf8") === want;
    if (!same) problems.push(`echo ${echoes}: content differs (${data.length} bytes)`);
    if (echoes === expected.length) {
      say(problems.length ? "RESULT fail: " + problems.join("; ") : "RESULT ok");
      ws.close(1000, "done");
    }
  });
  ws.on("error", (err) => say("ERROR " + err.message));
  ws.on("close", (code) => {
    say("CLOSED " + code);
    process.exit(echoes === expected.length && problems.length === 0 ? 0 : 1);
  });
}

function server(certFile, keyFile) {
  const web = certFile
    ? https.createServer({ cert: fs.readFileSync(certFile), key: fs.readFileSync(keyFile) })
    : http.createServer();
  const wss = new WebSocketServer({ noServer: true, maxPayload: LIMIT });
  web.on("upgrade", (request, socket, head) => {
    const cork = request.url === "/greet-then-close";
    if (cork) socket.cork();
    wss.handleUpgrade(request, socket, head, (ws) => {
      wss.emit("connection", ws, request);
      if (cork) socket.uncork(); // the 101, the message and the close frame: one write
    });
  });
  web.on("listening", () => say("LISTENING " + web.address().port));
  web.listen(0, "127.0.0.1");
  wss.on("connection", (ws, request) => {
    say("PATH " + request.url);
    ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
    ws.on("error", (err) => say("ERROR " + err.message));
    ws.on("close", (code, reason) => {
      say(`CLOSED ${code} ${reason.toString()}`.trimEnd());
      process.exit(0);
    });
    if (request.url === "/greet-then-close") {
      ws.send("welcome");
      ws.close(4001, "turned away");
    }
  });
}

const [mode, ...args] = process.argv.slice(2);
if (mode === "client") client(args[0], args[1]);
else if (mode === "server") server(args[0], args[1]);
else {
  say("usage: ws_peer.js client URL [CA_FILE] | server [CERT_FILE KEY_FILE]");
  process.exit(1);
}
