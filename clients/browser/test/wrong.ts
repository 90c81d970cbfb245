// Mistakes the types of fanout.js refuse: tsc must report an error on each line marked `error`.
import { FanoutClient } from "../fanout.js";

declare const client: FanoutClient;
client.subscribe("notification.new", (event): number => event.payload.goingCount); // error: unknown field
client.subscribe("notifcation", () => undefined); // error: no such type or prefix
client.subscribe("chat.message", (event): number => event.payload.text ?? 0); // error: text is a string
client.subscribe("chat.typing", (event) => event.type === "chat.message"); // error: not a typing type
new FanoutClient({ url: "ws://127.0.0.1:8080/local" }); // error: url is a builder, not a string
client.setPosition("user:u1", "7"); // error: seq is a number
