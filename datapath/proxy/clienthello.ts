// Reads the SNI and ALPN offers out of a TLS ClientHello without terminating TLS: listener
// selection and TLS passthrough both need the name before any handshake happens.
// RFC 8446 §4.1.2 (ClientHello), RFC 6066 §3 (server_name), RFC 7301 (ALPN).

export type HelloResult =
  | { state: "more" }
  | { state: "invalid"; reason: string }
  | { state: "ok"; sni?: string; alpn: string[] };

const RECORD_HEADER = 5;
const MAX_HELLO = 64 * 1024;

/** Is this the first byte of a TLS handshake record? */
export function looksLikeTls(first: number): boolean {
  return first === 0x16;
}

/**
 * Parses the ClientHello at the start of `buf`. Answers `more` until enough bytes have arrived;
 * the handshake message may span several records, which are reassembled.
 */
export function parseClientHello(buf: Buffer): HelloResult {
  // Reassemble the handshake layer from consecutive handshake records.
  const parts: Buffer[] = [];
  let off = 0;
  let have = 0;
  let need = -1;
  while (need < 0 || have < need) {
    if (buf.length < off + RECORD_HEADER) return buf.length > MAX_HELLO ? invalid("ClientHello too large") : { state: "more" };
    if (buf[off] !== 0x16) return invalid("not a TLS handshake record");
    if (buf[off + 1] !== 3) return invalid("unknown TLS record version");
    const len = buf.readUInt16BE(off + 3);
    if (len === 0 || len > 16384 + 2048) return invalid("bad TLS record length");
    if (buf.length < off + RECORD_HEADER + len) return buf.length > MAX_HELLO ? invalid("ClientHello too large") : { state: "more" };
    const frag = buf.subarray(off + RECORD_HEADER, off + RECORD_HEADER + len);
    parts.push(frag);
    have += frag.length;
    off += RECORD_HEADER + len;
    if ((parts[0] as Buffer)[0] !== 1) return invalid("first handshake message is not a ClientHello");
    // Records may split anywhere, even inside the 4-byte handshake header (RFC 8446 §5.1).
    if (need < 0 && have >= 4) {
      const h = parts.length === 1 ? frag : Buffer.concat(parts);
      need = 4 + ((h[1] ?? 0) << 16 | (h[2] ?? 0) << 8 | (h[3] ?? 0));
      if (need > MAX_HELLO) return invalid("ClientHello too large");
    }
  }
  const hs = (parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts)).subarray(0, need);
  return parseHello(hs);
}

function invalid(reason: string): HelloResult {
  return { state: "invalid", reason };
}

function parseHello(hs: Buffer): HelloResult {
  const r = new Reader(hs, 4);
  r.skip(2 + 32); // legacy_version, random
  r.skip(r.u8()); // session id
  r.skip(r.u16()); // cipher suites
  r.skip(r.u8()); // compression methods
  if (r.failed) return invalid("truncated ClientHello");
  if (r.remaining === 0) return { state: "ok", alpn: [] };
  const extLen = r.u16();
  const extEnd = r.pos + extLen;
  if (extEnd > hs.length) return invalid("truncated extensions");
  let sni: string | undefined;
  const alpn: string[] = [];
  while (r.pos + 4 <= extEnd) {
    const type = r.u16();
    const len = r.u16();
    const end = r.pos + len;
    if (end > extEnd) return invalid("truncated extension");
    if (type === 0) {
      const listEnd = r.pos + 2 + r.u16();
      while (r.pos + 3 <= Math.min(listEnd, end)) {
        const nameType = r.u8();
        const name = r.bytes(r.u16());
        if (nameType === 0 && name) {
          // latin1, not ascii: ascii decoding drops the high bit and would turn 0xE1 into "a".
          const host = name.toString("latin1");
          // A server_name is a DNS name: no trailing dot, no IP literal, no control bytes.
          if (!/^[A-Za-z0-9._-]+$/.test(host)) return invalid("malformed server_name");
          sni = host.replace(/\.$/, "").toLowerCase();
        }
      }
    } else if (type === 16) {
      const listEnd = r.pos + 2 + r.u16();
      while (r.pos + 1 <= Math.min(listEnd, end)) {
        const p = r.bytes(r.u8());
        if (p) alpn.push(p.toString("latin1"));
      }
    }
    if (r.failed) return invalid("truncated extension");
    r.pos = end;
  }
  return sni === undefined ? { state: "ok", alpn } : { state: "ok", sni, alpn };
}

class Reader {
  buf: Buffer;
  pos: number;
  failed = false;
  constructor(buf: Buffer, pos: number) {
    this.buf = buf;
    this.pos = pos;
  }
  get remaining(): number {
    return this.buf.length - this.pos;
  }
  skip(n: number): void {
    if (this.pos + n > this.buf.length) this.failed = true;
    this.pos += n;
  }
  u8(): number {
    if (this.pos + 1 > this.buf.length) return this.fail();
    return this.buf[this.pos++] ?? 0;
  }
  u16(): number {
    if (this.pos + 2 > this.buf.length) return this.fail();
    const v = this.buf.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }
  bytes(n: number): Buffer | undefined {
    if (this.pos + n > this.buf.length) {
      this.fail();
      return undefined;
    }
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }
  private fail(): number {
    this.failed = true;
    this.pos = this.buf.length;
    return 0;
  }
}
