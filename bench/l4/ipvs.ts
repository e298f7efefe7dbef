// The IPVS peer, as kube-proxy's ipvs mode sets it up: every VIP on a dummy interface (IPVS
// intercepts at LOCAL_IN, so the node must own the address), one virtual server per service port
// in NAT (masquerade) mode. Many kernels are built without IPVS (CONFIG_IP_VS unset); then
// `ipvsadm` fails with "Protocol not available" and the benchmark prints the reason instead of a
// figure.
import { readFileSync } from "node:fs";
import { release } from "node:os";
import { gunzipSync } from "node:zlib";
import type { Service } from "./services.ts";
import { run } from "./sh.ts";

const IPVSADM = "/usr/sbin/ipvsadm";

/** Why IPVS cannot be used in `ns`, or undefined when it can. */
export async function ipvsUnavailable(ns: string): Promise<string | undefined> {
  try {
    await run(IPVSADM, ["-Ln"], { ns });
    return undefined;
  } catch (err) {
    const msg = (err as Error).message;
    // "Can't initialize ipvs: Protocol not available\nAre you sure that IP Virtual Server is built in the kernel or as module?"
    const line = /Can't initialize ipvs: [^\n]*/.exec(msg)?.[0] ?? msg.split("\n")[0] ?? msg;
    return `ipvsadm: ${line.replace(/^.*?ipvsadm -Ln: exited \d+: /, "")}${kernelConfigNote()}`;
  }
}

/** Programs IPVS for `services` in `ns`; resolves to the seconds it took. */
export async function installIpvs(ns: string, services: readonly Service[]): Promise<number> {
  const t0 = performance.now();
  const dev = "sl4-ipvs0";
  const batch = [`link add ${dev} type dummy`, `link set ${dev} up`, ...services.map((s) => `address add ${s.vip}/32 dev ${dev}`)];
  await run("ip", ["-n", ns, "-batch", "-"], { input: `${batch.join("\n")}\n`, timeoutMs: 300_000 });
  const lines: string[] = [];
  for (const s of services) {
    for (const p of s.ports) {
      lines.push(`-A -t ${s.vip}:${p.port} -s rr`, `-a -t ${s.vip}:${p.port} -r ${s.backend}:${p.backendPort} -m -w 1`);
    }
  }
  await run("/usr/sbin/ipvsadm-restore", [], { ns, input: `${lines.join("\n")}\n`, timeoutMs: 300_000 });
  return (performance.now() - t0) / 1000;
}

/** What the running kernel's config says about IPVS, when it exposes its config. */
function kernelConfigNote(): string {
  try {
    const config = gunzipSync(readFileSync("/proc/config.gz")).toString("utf8");
    const line = /^(# CONFIG_IP_VS is not set|CONFIG_IP_VS=[ym])$/m.exec(config)?.[1];
    return line ? ` (kernel ${release()}: ${line.replace(/^# /, "")})` : ` (kernel ${release()})`;
  } catch {
    return ` (kernel ${release()})`;
  }
}
