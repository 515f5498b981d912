// Element Web's end-to-end encryption path, through matrix-js-sdk's Rust
// crypto (WASM): device keys and one-time keys uploaded, keys queried and
// claimed, the Megolm session shared by to-device messages, and an
// encrypted message decrypted by the other user; then the same for a user
// on sliding sync.
import { base, fail, within, register, until } from "./helpers.mjs";
import { SlidingSync } from "matrix-js-sdk/lib/sliding-sync.js";

try {
  const alice = await register("e2alice", { crypto: true });
  const bob = await register("e2bob", { crypto: true });
  const prepared = (c) => new Promise((res) => c.on("sync", (state) => state === "PREPARED" && res()));
  const ready = Promise.all([prepared(alice), prepared(bob)]);
  await alice.startClient({ initialSyncLimit: 10, lazyLoadMembers: true });
  await bob.startClient({ initialSyncLimit: 10, lazyLoadMembers: true });
  await within(ready, 20000, "first sync");

  const { room_id: roomId } = await alice.createRoom({
    name: "secret", preset: "private_chat", invite: [bob.getUserId()],
    initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }],
  });
  await within(until(bob, "Room", () => bob.getRoom(roomId)), 20000, "invite reaching bob");
  await bob.joinRoom(roomId);
  await within(until(alice, "RoomMember.membership", () => alice.getRoom(roomId)?.getMember(bob.getUserId())?.membership === "join"), 20000, "bob's join reaching alice");

  const decrypted = new Promise((res, rej) => bob.on("Event.decrypted", (ev, err) => {
    if (ev.getRoomId() !== roomId) return;
    if (err || ev.isDecryptionFailure()) return rej(new Error("decryption failed: " + (err || ev.decryptionFailureReason)));
    if (ev.getContent().body === "for your eyes only") res(ev);
  }));
  await alice.sendTextMessage(roomId, "for your eyes only");
  const ev = await within(decrypted, 30000, "bob decrypting alice's message");
  if (ev.getWireType() !== "m.room.encrypted") fail("message was not encrypted on the wire");
  if (ev.getSender() !== alice.getUserId()) fail("sender " + ev.getSender());

  // Carol lives on sliding sync (Element Web's sliding sync mode): her keys
  // and the room key reach her through its e2ee and to_device extensions.
  const carol = await register("e2carol", { crypto: true });
  const required = [["m.room.encryption", ""], ["m.room.member", "$LAZY"], ["m.room.member", "$ME"], ["m.room.create", ""]];
  const ss = new SlidingSync(base, new Map([["all", { ranges: [[0, 20]], timeline_limit: 5, required_state: required }]]),
    { timeline_limit: 20, required_state: required }, carol, 30000);
  await carol.startClient({ slidingSync: ss, lazyLoadMembers: true });
  await alice.invite(roomId, carol.getUserId());
  await within(until(carol, "Room", () => carol.getRoom(roomId)), 20000, "invite reaching carol over sliding sync");
  await carol.joinRoom(roomId);
  await within(until(alice, "RoomMember.membership", () => alice.getRoom(roomId)?.getMember(carol.getUserId())?.membership === "join"), 20000, "carol's join reaching alice");
  const carolDecrypted = new Promise((res, rej) => carol.on("Event.decrypted", (e, err) => {
    if (e.getRoomId() !== roomId || e.getWireType() !== "m.room.encrypted") return;
    if (err || e.isDecryptionFailure()) return;
    if (e.getContent().body === "hello carol") res(e);
  }));
  await alice.sendTextMessage(roomId, "hello carol");
  await within(carolDecrypted, 30000, "carol decrypting over sliding sync");
  carol.stopClient();

  alice.stopClient();
  bob.stopClient();
  console.log("matrix-js-sdk E2EE flow passed");
  process.exit(0);
} catch (e) {
  fail(e && e.stack ? e.stack : String(e));
}
