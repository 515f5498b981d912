// Shared by the js-sdk scenarios: the server under test (HS env var),
// failing, waiting with a deadline, and registering users.
import * as sdk from "matrix-js-sdk";

export const base = process.env.HS;
export const fail = (msg) => { console.error("FAIL:", msg); process.exit(1); };
export const within = (p, ms, what) =>
  Promise.race([p, new Promise((_, rej) => setTimeout(() => rej(new Error("timeout: " + what)), ms))]);
const quiet = { log() {}, info() {}, debug() {}, trace() {}, warn() {}, error: console.error, getChild() { return quiet; } };

// register signs a user up (m.login.dummy) and returns a client for it;
// with crypto, the client runs js-sdk's Rust crypto with an in-memory store.
export async function register(name, { crypto = false } = {}) {
  const c = sdk.createClient({ baseUrl: base, logger: quiet });
  const r = await c.registerRequest({ username: name, password: "pw-" + name, auth: { type: "m.login.dummy" } });
  const cli = sdk.createClient({ baseUrl: base, accessToken: r.access_token, userId: r.user_id, deviceId: r.device_id, logger: quiet });
  if (crypto) await cli.initRustCrypto({ useIndexedDB: false });
  return cli;
}

// until resolves once check() holds, re-checking on the client's event.
export const until = (client, event, check) => new Promise((res) => {
  const run = () => check() && res();
  run();
  client.on(event, run);
});
