// An echo bot on matrix-appservice (the Node appservice framework under
// matrix-appservice-bridge): it joins rooms it is invited to and answers
// every message with "echo: <body>", as its sender user.
//
// Env: HS_TOKEN, AS_TOKEN, BOT_USER. It listens on 127.0.0.1 on a free
// port and prints "LISTENING <port>"; then it reads the homeserver's URL
// from the first line of stdin, and exits when stdin closes.
import { AppService } from "matrix-appservice";
import readline from "node:readline";

const { HS_TOKEN, AS_TOKEN, BOT_USER } = process.env;
let resolveHS;
const hsURL = new Promise((resolve) => (resolveHS = resolve));
let txn = 0;

async function call(method, path, body) {
  const hs = await hsURL;
  const res = await fetch(hs + path, {
    method,
    headers: { Authorization: `Bearer ${AS_TOKEN}`, "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  if (!res.ok) {
    throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
  }
  return res.json();
}

function fail(err) {
  console.error("echo bot failed:", err);
  process.exit(1);
}

const as = new AppService({ homeserverToken: HS_TOKEN });
as.on("type:m.room.member", (ev) => {
  if (ev.state_key === BOT_USER && ev.content?.membership === "invite") {
    call("POST", `/_matrix/client/v3/join/${encodeURIComponent(ev.room_id)}`, {})
      .then(() => console.log("joined", ev.room_id))
      .catch(fail);
  }
});
as.on("type:m.room.message", (ev) => {
  if (ev.sender === BOT_USER || typeof ev.content?.body !== "string") {
    return;
  }
  const path = `/_matrix/client/v3/rooms/${encodeURIComponent(ev.room_id)}/send/m.room.message/echo${txn++}`;
  call("PUT", path, { msgtype: "m.notice", body: `echo: ${ev.content.body}` })
    .then((r) => console.log("echoed", ev.event_id, "as", r.event_id))
    .catch(fail);
});

await as.listen(0, "127.0.0.1");
console.log(`LISTENING ${as.server.address().port}`);

const rl = readline.createInterface({ input: process.stdin });
rl.once("line", (line) => resolveHS(line.trim()));
rl.on("close", async () => {
  await as.close();
  process.exit(0);
});
