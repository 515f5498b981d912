// Drives the homeserver's simplified sliding sync (MSC4186) with
// matrix-js-sdk's SlidingSync, the way Element Web does with sliding sync
// on: a room list and a room subscription feed the client's normal rooms
// and timelines; extensions carry typing, receipts and account data.
import { base, fail, within, register, until } from "./helpers.mjs";
import { SlidingSync } from "matrix-js-sdk/lib/sliding-sync.js";

try {
  const alice = await register("ssalice");
  const bob = await register("ssbob");
  const versions = await bob.getVersions();
  if (!versions.unstable_features["org.matrix.simplified_msc3575"]) fail("versions lack org.matrix.simplified_msc3575");

  // Alice sets the scene with plain requests; Bob lives on sliding sync.
  const { room_id: roomId } = await alice.createRoom({ name: "sliding room", preset: "public_chat" });
  await alice.sendTextMessage(roomId, "before bob");

  const requiredState = [["m.room.name", ""], ["m.room.member", "$LAZY"], ["m.room.member", "$ME"], ["m.room.create", ""]];
  const lists = new Map([["all", { ranges: [[0, 20]], timeline_limit: 1, required_state: requiredState }]]);
  const ss = new SlidingSync(base, lists, { timeline_limit: 20, required_state: requiredState }, bob, 30000);
  const listed = new Promise((res) => ss.on("SlidingSync.Lifecycle", (state, resp) => {
    if (resp && resp.lists && resp.lists.all && resp.lists.all.count >= 1) res(resp.lists.all.count);
  }));
  await bob.startClient({ slidingSync: ss, lazyLoadMembers: true });

  await bob.joinRoom(roomId);
  const count = await within(listed, 15000, "room list with the joined room");
  if (count !== 1) fail("list count " + count);

  const received = new Promise((res) => bob.on("Room.timeline", (ev) => {
    if (ev.getType() === "m.room.message" && ev.getContent().body === "hello over sliding sync") res(ev);
  }));
  await alice.sendTextMessage(roomId, "hello over sliding sync");
  const ev = await within(received, 15000, "message reaching bob over sliding sync");

  const room = bob.getRoom(roomId);
  if (!room) fail("bob has no room object");
  if (room.name !== "sliding room") fail("room name " + room.name);

  // Opening the room: a subscription brings more history.
  ss.modifyRoomSubscriptions(new Set([roomId]));
  await within(until(bob, "Room.timeline", () => room.getLiveTimeline().getEvents().some((e) => e.getContent().body === "before bob")),
    15000, "subscription bringing older messages");

  const typingSeen = new Promise((res) => bob.on("RoomMember.typing", (e, m) => m.userId === alice.getUserId() && m.typing && res()));
  await alice.sendTyping(roomId, true, 5000);
  await within(typingSeen, 15000, "typing reaching bob over the typing extension");

  const receiptSeen = new Promise((res) => bob.on("Room.receipt", (rev) => {
    const content = rev.getContent()[ev.getId()];
    if (content && content["m.read"] && content["m.read"][alice.getUserId()]) res();
  }));
  await alice.sendReadReceipt(ev);
  await within(receiptSeen, 15000, "alice's receipt reaching bob over the receipts extension");

  const adSeen = new Promise((res) => bob.on("accountData", (e) => e.getType() === "org.example.test" && res()));
  await bob.setAccountData("org.example.test", { n: 1 });
  await within(adSeen, 15000, "account data over the account_data extension");

  bob.stopClient();
  console.log("matrix-js-sdk sliding sync flow passed");
  process.exit(0);
} catch (e) {
  fail(e && e.stack ? e.stack : String(e));
}
