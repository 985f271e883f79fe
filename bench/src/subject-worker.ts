/**
 * One subject of a paired measurement, in a worker thread of its own (see `paired()` in
 * measure.ts): its own V8 isolate, so the JIT tunes shared code (a client library, core) for this
 * subject alone, as it would be in a real program. Opens the subject named by `workerData`, then
 * answers the coordinator's messages: warm up, run one timed block, close.
 */
import { parentPort, workerData } from "node:worker_threads";
import { type Subject, type SubjectSpec, timed } from "./measure.js";

type Message = { type: "warmup"; count: number } | { type: "block"; from: number; rounds: number; width: number } | { type: "close" };

const spec = workerData as SubjectSpec;
const port = parentPort;
if (!port) throw new Error("subject-worker runs as a worker thread");

const module = (await import(spec.module)) as Record<string, (...args: unknown[]) => Promise<Subject>>;
const open = module[spec.open];
if (!open) throw new Error(`bench: ${spec.module} has no export ${spec.open}`);
const subject = await open(...spec.args);

port.on("message", (message: Message) => {
  run(message).then(
    (reply) => {
      port.postMessage(reply);
      if (message.type === "close") port.close();
    },
    (error: Error) => port.postMessage({ error: error.stack ?? String(error) }),
  );
});
port.postMessage({ ready: true });

async function run(message: Message): Promise<unknown> {
  switch (message.type) {
    case "warmup":
      for (let i = 0; i < message.count; i++) await subject.one(1e9 + i);
      return { done: true };
    case "block":
      return { ms: await timed(message.rounds, message.width, (i) => subject.one(message.from + i)) };
    case "close":
      await subject.close();
      return { done: true };
  }
}
