// How a byte splice ends: a clean end on one side delivers everything to the other before it
// closes; a reset takes both down at once.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { Duplex } from "node:stream";
import { splice } from "./splice.ts";

/** A backend on loopback that sends `size` bytes to whoever connects, then closes (FIN). */
async function sender(size: number): Promise<{ port: number; close: () => void }> {
  const server = net.createServer((s) => s.end(Buffer.alloc(size, 7)));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { port: (server.address() as net.AddressInfo).port, close: () => server.close() };
}

/**
 * A client side whose writes complete slowly, as a socket's do once a slow reader has filled the
 * kernel's send buffer. Counts what it accepted while still open.
 */
function slowClient(delayMs: number): { side: Duplex; delivered: () => number } {
  let delivered = 0;
  const side: Duplex = new Duplex({
    highWaterMark: 1024,
    read() {},
    write(chunk: Buffer, _enc, cb) {
      setTimeout(() => {
        if (!side.destroyed) delivered += chunk.length;
        cb();
      }, delayMs);
    },
  });
  return { side, delivered: () => delivered };
}

/** A client side that accepts every write at once and sends what the test pushes. */
function nullClient(): Duplex {
  return new Duplex({ read() {}, write(_c, _e, cb) { cb(); } });
}

/** Splices `client` to a new connection to `server`, runs `then`, and waits until that connection closes. */
async function spliceUntilClosed(server: net.Server, client: Duplex, then: () => void): Promise<net.Socket> {
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  try {
    const b = net.connect((server.address() as net.AddressInfo).port, "127.0.0.1");
    const closed = new Promise((r) => b.once("close", r));
    b.once("connect", () => {
      splice(client, b, 60_000);
      then();
    });
    await closed;
    return b;
  } finally {
    server.close();
  }
}

describe("splice", () => {
  it("delivers the whole tail to a slow client after the backend ends", async () => {
    const size = 200_000;
    const backend = await sender(size);
    try {
      const client = slowClient(5);
      // Finished (everything accepted) or closed (the splice gave up on the rest).
      const finished = new Promise((r) => {
        client.side.once("finish", r);
        client.side.once("close", r);
      });
      const b = net.connect(backend.port, "127.0.0.1");
      b.once("connect", () => splice(client.side, b, 60_000));
      await finished;
      assert.equal(client.delivered(), size);
    } finally {
      backend.close();
    }
  });

  it("closes the backend socket once the client ended and it has flushed", async () => {
    const received: Buffer[] = [];
    let backendSawEnd = false;
    const server = net.createServer((s) => {
      s.on("data", (c: Buffer) => received.push(c));
      s.on("end", () => {
        backendSawEnd = true;
        s.end();
      });
    });
    const client = nullClient();
    await spliceUntilClosed(server, client, () => {
      client.push(Buffer.alloc(100_000, 1));
      client.push(null);
    });
    assert.equal(Buffer.concat(received).length, 100_000);
    assert.ok(backendSawEnd, "the backend got no FIN");
  });

  it("tears the other side down at once when one side is reset", async () => {
    const server = net.createServer((s) => s.on("error", () => undefined));
    const client = nullClient();
    const b = await spliceUntilClosed(server, client, () => client.destroy());
    assert.ok(b.destroyed);
  });
});
