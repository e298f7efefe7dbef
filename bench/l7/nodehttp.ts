// The ceiling of any proxy built on node:http: a node:http server that answers the benchmark's
// route itself (Host + PathPrefix, 200 "ok" like the backend, 404 otherwise) and forwards nothing.
// Its requests per CPU-second bound what Sluice's proxy, which also forwards each request over
// undici and applies its filters, can reach on the same machine.
// Run: node bench/l7/nodehttp.ts HOST:PORT HOSTNAME PREFIX
import http from "node:http";

const [listen = "", hostname = "", prefix = "/"] = process.argv.slice(2);
const at = /^(.*):(\d+)$/.exec(listen);
if (!at) throw new Error(`usage: nodehttp.ts HOST:PORT HOSTNAME PREFIX (got ${listen})`);
const matches = (host: string | undefined, url: string | undefined): boolean => {
  const h = (host ?? "").replace(/:\d+$/, "").toLowerCase();
  const path = (url ?? "").split("?")[0] ?? "";
  return h === hostname && (path === prefix || path.startsWith(`${prefix}/`));
};
http
  .createServer((req, res) => {
    const ok = matches(req.headers.host, req.url);
    res.writeHead(ok ? 200 : 404, ["content-type", "text/plain", "content-length", "2"]);
    res.end(ok ? "ok" : "no");
  })
  .listen(Number(at[2]), at[1]);
process.on("SIGTERM", () => process.exit(0));
