// Drives a homeserver (HS env var) with matrix-js-sdk the way Element Web
// does: register, start syncing with lazy loading, create a room, invite,
// join, message, read receipt, typing, paginate. Exits non-zero on failure.
import { fail, within, register } from "./helpers.mjs";

try {
  const alice = await register("jsalice");
  const bob = await register("jsbob");
  const versions = await alice.getVersions();
  if (!versions.versions.includes("v1.1")) fail("versions lack v1.1");
  const prepared = (c) => new Promise((res) => c.on("sync", (state) => state === "PREPARED" && res()));
  const ready = Promise.all([prepared(alice), prepared(bob)]);
  await alice.startClient({ initialSyncLimit: 10, lazyLoadMembers: true });
  await bob.startClient({ initialSyncLimit: 10, lazyLoadMembers: true });
  await within(ready, 15000, "first sync");

  const invited = new Promise((res) => bob.on("RoomMember.membership", (ev, m) => {
    if (m.userId === bob.getUserId() && m.membership === "invite") res();
  }));
  const { room_id: roomId } = await alice.createRoom({ name: "js room", invite: [bob.getUserId()], preset: "private_chat" });
  await within(invited, 15000, "invite reaching bob");
  await bob.joinRoom(roomId);

  const received = new Promise((res) => bob.on("Room.timeline", (ev) => {
    if (ev.getType() === "m.room.message" && ev.getContent().body === "hello from js") res(ev);
  }));
  await alice.sendTextMessage(roomId, "hello from js");
  const ev = await within(received, 15000, "message reaching bob");

  const room = bob.getRoom(roomId);
  if (room.name !== "js room") fail("room name " + room.name);
  if (room.getJoinedMemberCount() !== 2) fail("joined members " + room.getJoinedMemberCount());

  const receiptSeen = new Promise((res) => alice.on("Room.receipt", (rev) => {
    const content = rev.getContent()[ev.getId()];
    if (content && content["m.read"] && content["m.read"][bob.getUserId()]) res();
  }));
  await bob.sendReadReceipt(ev);
  await within(receiptSeen, 15000, "bob's receipt reaching alice");

  const typingSeen = new Promise((res) => bob.on("RoomMember.typing", (e, m) => m.userId === alice.getUserId() && m.typing && res()));
  await alice.sendTyping(roomId, true, 5000);
  await within(typingSeen, 15000, "typing reaching bob");

  const page = await alice.createMessagesRequest(roomId, null, 20, "b");
  if (!page.chunk.some((e) => e.content && e.content.body === "hello from js")) fail("/messages lacks the message");
  const rules = await alice.getPushRules();
  if (!rules.global.override.some((r) => r.rule_id === ".m.rule.master")) fail("push rules lack .m.rule.master");

  // Delayed events (MSC4140) as Element Call's MatrixRTC drives them.
  const { delay_id: delayId } = await alice._unstable_sendDelayedStateEvent(roomId, { delay: 60000 },
    "org.matrix.msc3401.call.member", { left: true }, "_" + alice.getUserId() + "_JS");
  const pending = await alice._unstable_getDelayedEvents();
  if (!pending.delayed_events.some((d) => d.delay_id === delayId)) fail("delayed event not listed");
  await alice._unstable_updateDelayedEvent(delayId, "restart");
  await alice._unstable_updateDelayedEvent(delayId, "send");
  const state = await alice.getStateEvent(roomId, "org.matrix.msc3401.call.member", "_" + alice.getUserId() + "_JS");
  if (state.left !== true) fail("delayed state not sent: " + JSON.stringify(state));

  alice.stopClient();
  bob.stopClient();
  console.log("matrix-js-sdk flow passed");
  process.exit(0);
} catch (e) {
  fail(e && e.stack ? e.stack : String(e));
}
