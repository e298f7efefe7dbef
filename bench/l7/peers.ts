// nginx and HAProxy configured to do what one Gateway API HTTPRoute does: match the Host and a
// PathPrefix, forward to one backend over a pool of keep-alive HTTP/1.1 connections, 404 otherwise.
// Both preserve the client's Host header and add no headers; logging is off in both.
import { chmod, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { PEER_BINARIES } from "./install.ts";
import { makeTempDir, startServer, type Endpoint, type Server } from "./proc.ts";

export type PeerOptions = {
  listen: Endpoint;
  upstream: Endpoint;
  /** Cores given to the proxy: nginx worker processes, HAProxy threads. */
  workers: number;
  hostname: string;
  pathPrefix: string;
  /** Binary override; defaults to the Debian path. */
  bin?: string;
};

// Gateway API PathPrefix matches whole path elements: "/api" matches "/api" and "/api/x" but not
// "/apix"; a trailing slash in the prefix is ignored.
function prefixParts(pathPrefix: string): { exact: string; under: string } | "all" {
  const p = pathPrefix.replace(/\/+$/, "");
  if (p === "") return "all";
  if (!p.startsWith("/") || /[\s;{}'"#]/.test(p)) throw new Error(`unsupported path prefix ${JSON.stringify(pathPrefix)}`);
  return { exact: p, under: `${p}/` };
}

function checkHostname(h: string): string {
  if (!/^[A-Za-z0-9.-]+$/.test(h)) throw new Error(`unsupported hostname ${JSON.stringify(h)}`);
  return h.toLowerCase();
}

/**
 * Shared by the peer nginx and the backend nginx of the L7 and L4 benchmarks: everything nginx
 * writes stays in `dir`. `keepaliveTimeout` "0" closes every connection after its response.
 */
export function nginxMainConfig(dir: string, workers: number, http: string, o: { workerConnections?: number; keepaliveTimeout?: string } = {}): string {
  return `worker_processes ${workers};
error_log ${join(dir, "error.log")} warn;
pid ${join(dir, "nginx.pid")};
worker_rlimit_nofile 65536;
events {
  worker_connections ${o.workerConnections ?? 8192};
}
http {
  access_log off;
  client_body_temp_path ${join(dir, "client_body")};
  proxy_temp_path ${join(dir, "proxy")};
  fastcgi_temp_path ${join(dir, "fastcgi")};
  uwsgi_temp_path ${join(dir, "uwsgi")};
  scgi_temp_path ${join(dir, "scgi")};
  # nginx closes a client connection after 1000 requests by default; the other proxies do not.
  keepalive_requests 1000000;
  keepalive_timeout ${o.keepaliveTimeout ?? "75s"};
${http}
}
`;
}

export async function runNginx(name: string, bin: string, dir: string, listen: Endpoint, conf: string): Promise<Server> {
  // Workers run unprivileged when we are root and must reach the temp paths inside the dir.
  await chmod(dir, 0o755);
  const file = join(dir, "nginx.conf");
  await writeFile(file, conf);
  // -e: the compiled-in error log is opened before the config is read.
  return startServer(name, bin, ["-p", dir, "-c", file, "-e", join(dir, "error.log"), "-g", "daemon off;"], listen, dir);
}

export async function startNginx(opts: PeerOptions): Promise<Server> {
  const dir = await makeTempDir("nginx");
  const host = checkHostname(opts.hostname);
  const parts = prefixParts(opts.pathPrefix);
  const proxy = `proxy_pass http://upstream_backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;`;
  const locations = parts === "all"
    ? `location / {\n      ${proxy}\n    }`
    : `location = ${parts.exact} {\n      ${proxy}\n    }\n    location ^~ ${parts.under} {\n      ${proxy}\n    }\n    location / {\n      return 404;\n    }`;
  const http = `  upstream upstream_backend {
    server ${opts.upstream.host}:${opts.upstream.port};
    keepalive 64;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
  }
  server {
    listen ${opts.listen.host}:${opts.listen.port} default_server;
    server_name _;
    return 404;
  }
  server {
    listen ${opts.listen.host}:${opts.listen.port};
    server_name ${host};
    ${locations}
  }`;
  return runNginx("nginx", opts.bin ?? PEER_BINARIES.nginx, dir, opts.listen, nginxMainConfig(dir, opts.workers, http));
}

export async function startHaproxy(opts: PeerOptions): Promise<Server> {
  const dir = await makeTempDir("haproxy");
  const host = checkHostname(opts.hostname);
  const parts = prefixParts(opts.pathPrefix);
  const pathAcl = parts === "all"
    ? "  acl route_path always_true"
    : `  acl route_path path -m str ${parts.exact}\n  acl route_path path -m beg ${parts.under}`;
  const conf = `global
  nbthread ${opts.workers}
  # Far above any benchmark's connection count, below what a 20000 fd limit allows (2 fds each).
  maxconn 8192

defaults
  mode http
  option http-keep-alive
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-request 10s
  timeout http-keep-alive 75s

frontend gateway
  bind ${opts.listen.host}:${opts.listen.port}
  # Host without a port, as a Gateway listener hostname matches it.
  acl route_host req.hdr(host),field(1,:),lower -m str ${host}
${pathAcl}
  http-request return status 404 if !route_host or !route_path
  use_backend route

backend route
  http-reuse always
  server upstream ${opts.upstream.host}:${opts.upstream.port}
`;
  const file = join(dir, "haproxy.cfg");
  await writeFile(file, conf);
  // -db: foreground, no daemon; -W not needed with threads in one process.
  return startServer("haproxy", opts.bin ?? PEER_BINARIES.haproxy, ["-db", "-f", file], opts.listen, dir);
}

/** node:http answering the route itself (bench/l7/nodehttp.ts): the ceiling of a node:http proxy. */
export async function startNodeHttp(opts: PeerOptions): Promise<Server> {
  const dir = await makeTempDir("nodehttp");
  const script = fileURLToPath(new URL("./nodehttp.ts", import.meta.url));
  // process.execPath: the Node 24 this benchmark runs on.
  return startServer("node:http", process.execPath, [script, `${opts.listen.host}:${opts.listen.port}`, checkHostname(opts.hostname), opts.pathPrefix], opts.listen, dir);
}
