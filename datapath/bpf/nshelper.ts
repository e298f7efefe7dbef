// A process run inside a network namespace (see NsHelper in netns.ts) that serves and makes TCP
// and UDP connections on command: JSON lines on stdin, one JSON answer line per command on stdout.
// Servers answer like datapath/echo's tcp/udp modes, and also report the peer they saw, so tests
// can check SNAT and reverse NAT from both ends.
import net from "node:net";
import dgram from "node:dgram";
import { createInterface } from "node:readline";

interface Cmd {
  id: number;
  op: string;
  proto?: "tcp" | "udp";
  host?: string;
  port?: number;
  name?: string;
  hold?: string;
  data?: string;
  count?: number;
  timeoutMs?: number;
}

const held = new Map<string, net.Socket>();
const servers: (net.Server | dgram.Socket)[] = [];

function reply(id: number, body: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify({ id, ...body }) + "\n");
}

function identity(name: string, addr: string | undefined, port: number | undefined): string {
  return JSON.stringify({ name, peer: `${addr}:${port}` }) + "\n";
}

function serve(c: Cmd): Promise<Record<string, unknown>> {
  const name = c.name ?? "server";
  if (c.proto === "udp") {
    const s = dgram.createSocket("udp4");
    s.on("message", (msg, r) => s.send(Buffer.concat([Buffer.from(identity(name, r.address, r.port)), msg]), r.port, r.address));
    s.on("error", () => {});
    servers.push(s);
    return new Promise((resolve) => s.bind(c.port, c.host, () => resolve({ ok: true })));
  }
  const srv = net.createServer((sock) => {
    sock.on("error", () => {});
    sock.write(identity(name, sock.remoteAddress, sock.remotePort));
    sock.pipe(sock);
  });
  servers.push(srv);
  return new Promise((resolve) => {
    srv.once("error", (e) => resolve({ ok: false, error: e.message }));
    srv.listen({ host: c.host, port: c.port }, () => resolve({ ok: true }));
  });
}

function tcp(c: Cmd): Promise<Record<string, unknown>> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: c.host ?? "", port: c.port ?? 0 });
    let buf = "";
    const done = (r: Record<string, unknown>): void => {
      clearTimeout(t);
      sock.removeAllListeners("data");
      if (!r["ok"] || !c.hold) sock.destroy();
      resolve(r);
    };
    const t = setTimeout(() => done({ ok: false, error: "timeout" }), c.timeoutMs ?? 3000);
    sock.on("error", (e: NodeJS.ErrnoException) => done({ ok: false, error: e.code ?? e.message }));
    sock.on("data", (d: Buffer) => {
      buf += d.toString();
      const nl = buf.indexOf("\n");
      if (nl < 0) return;
      if (c.hold) {
        held.set(c.hold, sock);
        sock.on("error", () => {});
      }
      done({ ok: true, line: JSON.parse(buf.slice(0, nl)) as unknown, local: sock.localPort, remote: `${sock.remoteAddress}:${sock.remotePort}` });
    });
  });
}

function send(c: Cmd): Promise<Record<string, unknown>> {
  const sock = held.get(c.hold ?? "");
  if (!sock) return Promise.resolve({ ok: false, error: `no held connection ${c.hold}` });
  const data = c.data ?? "ping";
  return new Promise((resolve) => {
    let got = "";
    const done = (r: Record<string, unknown>): void => {
      clearTimeout(t);
      sock.removeListener("data", onData);
      resolve(r);
    };
    const t = setTimeout(() => done({ ok: false, error: "timeout", got }), c.timeoutMs ?? 3000);
    const onData = (d: Buffer): void => {
      got += d.toString();
      if (got.length >= data.length) done({ ok: got === data, data: got });
    };
    sock.on("data", onData);
    if (sock.destroyed) done({ ok: false, error: "connection closed" });
    else sock.write(data);
  });
}

function udp(c: Cmd): Promise<Record<string, unknown>> {
  return new Promise((resolve) => {
    const s = dgram.createSocket("udp4");
    const done = (r: Record<string, unknown>): void => {
      clearTimeout(t);
      s.close();
      resolve(r);
    };
    const t = setTimeout(() => done({ ok: false, error: "timeout" }), c.timeoutMs ?? 2000);
    s.on("error", (e) => done({ ok: false, error: e.message }));
    s.on("message", (msg, r) => {
      const text = msg.toString();
      const nl = text.indexOf("\n");
      done({ ok: true, line: JSON.parse(text.slice(0, nl)) as unknown, rest: text.slice(nl + 1), from: `${r.address}:${r.port}` });
    });
    s.send(c.data ?? "ping", c.port ?? 0, c.host ?? "");
  });
}

async function many(c: Cmd, one: (c: Cmd) => Promise<Record<string, unknown>>): Promise<Record<string, unknown>> {
  const results: Record<string, unknown>[] = [];
  for (let i = 0; i < (c.count ?? 1); i++) results.push(await one({ ...c, hold: undefined }));
  return { ok: true, results };
}

async function handle(c: Cmd): Promise<Record<string, unknown>> {
  switch (c.op) {
    case "serve":
      return serve(c);
    case "tcp":
      return tcp(c);
    case "tcp-many":
      return many(c, tcp);
    case "send":
      return send(c);
    case "close": {
      held.get(c.hold ?? "")?.destroy();
      held.delete(c.hold ?? "");
      return { ok: true };
    }
    case "udp":
      return udp(c);
    case "udp-many":
      return many(c, udp);
    default:
      return { ok: false, error: `unknown op ${c.op}` };
  }
}

const rl = createInterface({ input: process.stdin });
rl.on("line", (line) => {
  let c: Cmd;
  try {
    c = JSON.parse(line) as Cmd;
  } catch {
    return;
  }
  handle(c).then(
    (r) => reply(c.id, r),
    (e: unknown) => reply(c.id, { ok: false, error: String(e) }),
  );
});
rl.on("close", () => process.exit(0));
process.stdout.write(JSON.stringify({ id: 0, ok: true, ready: true }) + "\n");
