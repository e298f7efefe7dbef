// The benchmark's backend: nginx answering `200 ok` on loopback, one worker, in its own process so
// it never shares the proxy's event loop, and fast enough that the proxy is what is measured.
import { PEER_BINARIES } from "./install.ts";
import { nginxMainConfig, runNginx } from "./peers.ts";
import { freePort, makeTempDir } from "./proc.ts";

export type Backend = { port: number; pid: number; stop(): Promise<void> };

export async function startBackend(port?: number, bin: string = PEER_BINARIES.nginx): Promise<Backend> {
  const host = "127.0.0.1";
  const p = port ?? await freePort(host);
  const dir = await makeTempDir("backend");
  const http = `  server {
    listen ${host}:${p} default_server;
    location / {
      default_type text/plain;
      return 200 "ok";
    }
  }`;
  const server = await runNginx("backend", bin, dir, { host, port: p }, nginxMainConfig(dir, 1, http));
  return { port: p, pid: server.pid, stop: server.stop };
}
