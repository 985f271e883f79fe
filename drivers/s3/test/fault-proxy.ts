import { once } from "node:events";
import { createServer, type IncomingMessage, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";

export interface Faults {
  /** Share of requests answered 503 ServiceUnavailable without reaching the server. */
  unavailable: number;
  /** Share of requests whose connection is dropped before they reach the server. */
  dropBefore: number;
  /** Share of requests forwarded (the server applies them) whose response is then dropped. */
  dropAfter: number;
  /** Share of requests (every 1/hang-th one, so it surely happens) forwarded, applied by the server and never answered: the client must time out. */
  hang: number;
  /** Every forwarded response waits up to this many ms (uniformly random). */
  maxDelayMs: number;
}

export interface FaultProxy {
  readonly endpoint: string;
  /** Change the faults while running; all zero makes it a plain proxy. */
  faults: Faults;
  readonly counts: { requests: number; unavailable: number; dropBefore: number; dropAfter: number; hang: number };
  close(): Promise<void>;
}

/**
 * A small HTTP proxy on loopback between an S3 client and a real S3 server that injects real
 * network faults: 503s, delays, connections dropped before the request reaches the server, and
 * connections dropped after the server applied it (the client cannot tell whether it did), and
 * requests the server applied that are never answered (the client's timeout must fire).
 */
export async function startFaultProxy(target: string, faults: Faults): Promise<FaultProxy> {
  const upstream = new URL(target);
  const counts = { requests: 0, unavailable: 0, dropBefore: 0, dropAfter: 0, hang: 0 };
  const proxy: { faults: Faults } = { faults };
  const server: Server = createServer(async (req, res) => {
    counts.requests++;
    const body = await readAll(req);
    const f = proxy.faults;
    // Decided first and by count, not by the roll: so it surely happens in a short test.
    const hang = f.hang > 0 && counts.requests % Math.round(1 / f.hang) === 0;
    const roll = hang ? 1 : Math.random();
    if (roll < f.unavailable) {
      counts.unavailable++;
      res.writeHead(503, { "content-type": "application/xml" });
      res.end("<?xml version='1.0' encoding='UTF-8'?><Error><Code>ServiceUnavailable</Code><Message>injected</Message></Error>");
      return;
    }
    if (roll < f.unavailable + f.dropBefore) {
      counts.dropBefore++;
      req.socket.destroy();
      return;
    }
    const dropAfter = roll < f.unavailable + f.dropBefore + f.dropAfter;

    const forward = request(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers },
      async (answer) => {
        const payload = await readAll(answer);
        if (dropAfter) {
          counts.dropAfter++;
          req.socket.destroy();
          return;
        }
        if (hang) {
          counts.hang++;
          return; // the socket stays open, silent, until the client gives up or close()
        }
        await new Promise((resolve) => setTimeout(resolve, Math.random() * f.maxDelayMs));
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        res.end(payload);
      },
    );
    forward.on("error", () => req.socket.destroy());
    forward.end(body);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const port = (server.address() as AddressInfo).port;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    get faults() {
      return proxy.faults;
    },
    set faults(next: Faults) {
      proxy.faults = next;
    },
    counts,
    close: async () => {
      server.closeAllConnections();
      server.close();
      await once(server, "close");
    },
  };
}

function readAll(stream: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.on("end", () => resolve(Buffer.concat(chunks)));
    stream.on("error", reject);
  });
}
