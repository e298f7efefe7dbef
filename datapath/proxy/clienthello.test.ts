// The ClientHello parser on real ClientHellos (captured from Node's own TLS client) and on
// hand-made malformed ones: SNI and ALPN extraction, incremental arrival, record reassembly.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import tls from "node:tls";
import { Duplex } from "node:stream";
import { looksLikeTls, parseClientHello, type HelloResult } from "./clienthello.ts";

/** The first flight of Node's TLS client: a ClientHello, captured without any network. */
function captureClientHello(opts: tls.ConnectionOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const wire = new Duplex({
      read() {},
      write(chunk: Buffer, _enc, cb) {
        cb();
        resolve(Buffer.from(chunk));
        setImmediate(() => socket.destroy());
      },
    });
    const socket = tls.connect({ ...opts, socket: wire });
    socket.on("error", reject);
  });
}

function ok(r: HelloResult): { sni?: string; alpn: string[] } {
  assert.equal(r.state, "ok", JSON.stringify(r));
  return r as { state: "ok"; sni?: string; alpn: string[] };
}

/** A record with the given content type/version around a payload. */
function record(payload: Buffer, type = 0x16, version = 0x0301): Buffer {
  const h = Buffer.alloc(5);
  h[0] = type;
  h.writeUInt16BE(version, 1);
  h.writeUInt16BE(payload.length, 3);
  return Buffer.concat([h, payload]);
}

/** A minimal ClientHello handshake message with the given extensions. */
function helloMessage(extensions: Buffer | undefined): Buffer {
  const body = Buffer.concat([
    Buffer.from([0x03, 0x03]), Buffer.alloc(32), // legacy_version, random
    Buffer.from([0]), // session id
    Buffer.from([0, 2, 0x13, 0x01]), // one cipher suite
    Buffer.from([1, 0]), // null compression
    extensions === undefined ? Buffer.alloc(0) : Buffer.concat([u16(extensions.length), extensions]),
  ]);
  return Buffer.concat([Buffer.from([1, 0, body.length >> 8, body.length & 0xff]), body]);
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

/** The message with its extensions length claiming one byte more than there is. */
function longExtensions(msg: Buffer): Buffer {
  const out = Buffer.from(msg);
  const at = 4 + 2 + 32 + 1 + 4 + 2; // handshake header, version, random, session id, ciphers, compression
  out.writeUInt16BE(out.readUInt16BE(at) + 1, at);
  return out;
}

function sniExtension(name: Buffer): Buffer {
  const entry = Buffer.concat([Buffer.from([0]), u16(name.length), name]);
  const list = Buffer.concat([u16(entry.length), entry]);
  return Buffer.concat([u16(0), u16(list.length), list]);
}

describe("parseClientHello", () => {
  it("recognises a handshake record by its first byte", () => {
    assert.equal(looksLikeTls(0x16), true);
    assert.equal(looksLikeTls("G".charCodeAt(0)), false);
    assert.equal(looksLikeTls("P".charCodeAt(0)), false);
  });

  it("reads SNI (lower-cased) and ALPN from Node's ClientHello", async () => {
    const hello = await captureClientHello({ servername: "Foo.Example.COM", ALPNProtocols: ["h2", "http/1.1"] });
    const r = ok(parseClientHello(hello));
    assert.equal(r.sni, "foo.example.com");
    assert.deepEqual(r.alpn, ["h2", "http/1.1"]);
  });

  it("reports no SNI when the client sends none", async () => {
    const hello = await captureClientHello({ host: "127.0.0.1" });
    const r = ok(parseClientHello(hello));
    assert.equal(r.sni, undefined);
    assert.deepEqual(r.alpn, []);
  });

  it("answers more for every proper prefix, byte by byte", async () => {
    const hello = await captureClientHello({ servername: "split.example.org", ALPNProtocols: ["http/1.1"] });
    for (let n = 0; n < hello.length; n++) assert.equal(parseClientHello(hello.subarray(0, n)).state, "more", `prefix ${n}`);
    assert.equal(ok(parseClientHello(hello)).sni, "split.example.org");
    // Bytes after the ClientHello (early data, a second record) do not disturb it.
    assert.equal(ok(parseClientHello(Buffer.concat([hello, Buffer.from([0x17, 3, 3, 0, 1, 0])]))).sni, "split.example.org");
  });

  it("reassembles a ClientHello fragmented over several records", async () => {
    const hello = await captureClientHello({ servername: "frag.example.org", ALPNProtocols: ["h2"] });
    const msg = hello.subarray(5);
    // Fragments of 1, 3 and 100 bytes: even the 4-byte handshake header may be split.
    for (const size of [1, 3, 100]) {
      const recs: Buffer[] = [];
      for (let i = 0; i < msg.length; i += size) recs.push(record(msg.subarray(i, i + size)));
      const all = Buffer.concat(recs);
      const r = ok(parseClientHello(all));
      assert.equal(r.sni, "frag.example.org", `fragment size ${size}`);
      assert.deepEqual(r.alpn, ["h2"]);
      assert.equal(parseClientHello(all.subarray(0, all.length - 1)).state, "more");
    }
  });

  it("accepts a ClientHello without extensions", () => {
    const r = ok(parseClientHello(record(helloMessage(undefined))));
    assert.equal(r.sni, undefined);
    assert.deepEqual(r.alpn, []);
  });

  it("rejects what is not a TLS ClientHello", () => {
    const msg = helloMessage(sniExtension(Buffer.from("a.example")));
    const cases: [string, Buffer][] = [
      ["application data record", record(msg, 0x17)],
      ["SSL 2 record version", record(msg, 0x16, 0x0200)],
      ["empty record", record(Buffer.alloc(0))],
      ["ServerHello", record(Buffer.concat([Buffer.from([2]), msg.subarray(1)]))],
      ["ServerHello split before its header ends", Buffer.concat([record(Buffer.from([2, 0])), record(Buffer.from([0, 4]))])],
      ["a later record that is not a handshake", Buffer.concat([record(msg.subarray(0, 10)), record(msg.subarray(10), 0x17)])],
      ["truncated body", record(Buffer.concat([Buffer.from([1, 0, 0, 10]), Buffer.alloc(10)]))],
      ["extension list longer than the message", record(longExtensions(msg))],
    ];
    for (const [name, buf] of cases) assert.equal(parseClientHello(buf).state, "invalid", name);
  });

  it("rejects a server_name that is not a DNS name", () => {
    for (const bad of ["a b.example", "evil\u0000.example", "x.example:443", "\u00e9.example"]) {
      const r = parseClientHello(record(helloMessage(sniExtension(Buffer.from(bad, "latin1")))));
      assert.equal(r.state, "invalid", JSON.stringify(bad));
    }
    assert.equal(ok(parseClientHello(record(helloMessage(sniExtension(Buffer.from("A-1.Example_x.org")))))).sni, "a-1.example_x.org");
  });

  it("bounds what it buffers", () => {
    // A record longer than TLS allows, and a ClientHello claiming more than 64 KiB.
    const header = Buffer.from([0x16, 3, 1, 0x50, 0x00]);
    assert.equal(parseClientHello(header).state, "invalid");
    const huge = record(Buffer.from([1, 0x01, 0x00, 0x01]));
    assert.equal(parseClientHello(huge).state, "invalid");
    // A 64 KiB ClientHello announced over full-size records is refused at its first record.
    const frag = record(Buffer.concat([Buffer.from([1, 0, 0xff, 0xff]), Buffer.alloc(16000)]));
    const rest = record(Buffer.alloc(16000));
    const many = Buffer.concat([frag, rest, rest, rest, rest.subarray(0, 100)]);
    assert.equal(parseClientHello(many).state, "invalid");
  });
});
