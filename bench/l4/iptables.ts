// The iptables peer: the nat rules kube-proxy's iptables mode writes for ClusterIP services
// (PREROUTING → KUBE-SERVICES → KUBE-SVC-* → KUBE-SEP-* DNAT, with the masquerade mark chains),
// installed in the node namespace with one iptables-restore, as kube-proxy does. Only the first
// packet of a connection walks the nat table (conntrack handles the rest), so KUBE-SERVICES'
// linear walk is paid per new connection. The filter-table chains kube-proxy also writes
// (KUBE-FORWARD, reject rules for services without endpoints) are not reproduced.
import { createHash } from "node:crypto";
import type { Service } from "./services.ts";
import { run } from "./sh.ts";

export type IptablesVariant = { name: string; restore: string; save: string };

/** nf_tables is Debian 12's default `iptables`; legacy (x_tables) is still what many nodes run. */
export const IPTABLES_VARIANTS: readonly IptablesVariant[] = [
  { name: "iptables (nf_tables)", restore: "/usr/sbin/iptables-nft-restore", save: "/usr/sbin/iptables-nft-save" },
  { name: "iptables-legacy", restore: "/usr/sbin/iptables-legacy-restore", save: "/usr/sbin/iptables-legacy-save" },
];

// kube-proxy names chains by a hash of the service port ("KUBE-SVC-" + 16 base32 characters).
function chain(prefix: string, key: string): string {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  const h = createHash("sha256").update(key).digest();
  let out = "";
  for (let i = 0; i < 16; i++) out += alphabet[(h[i] ?? 0) & 31];
  return `${prefix}${out}`;
}

/** The iptables-restore input for `services`, in order: the last service's rules come last. */
export function kubeProxyRules(services: readonly Service[]): string {
  const chains: string[] = [":KUBE-SERVICES - [0:0]", ":KUBE-NODEPORTS - [0:0]", ":KUBE-POSTROUTING - [0:0]", ":KUBE-MARK-MASQ - [0:0]"];
  const rules: string[] = [
    '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
    "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000",
    "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
    "-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0",
    '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully',
  ];
  const perService: string[] = [];
  for (const s of services) {
    for (const p of s.ports) {
      const id = `default/${s.name}:${p.name}`;
      const svc = chain("KUBE-SVC-", `${id}/tcp`);
      const sep = chain("KUBE-SEP-", `${id}/tcp/${s.backend}:${p.backendPort}`);
      chains.push(`:${svc} - [0:0]`, `:${sep} - [0:0]`);
      rules.push(`-A KUBE-SERVICES -d ${s.vip}/32 -p tcp -m comment --comment "${id} cluster IP" -m tcp --dport ${p.port} -j ${svc}`);
      perService.push(
        `-A ${svc} -m comment --comment "${id} -> ${s.backend}:${p.backendPort}" -j ${sep}`,
        `-A ${sep} -s ${s.backend}/32 -m comment --comment "${id}" -j KUBE-MARK-MASQ`,
        `-A ${sep} -p tcp -m comment --comment "${id}" -m tcp -j DNAT --to-destination ${s.backend}:${p.backendPort}`,
      );
    }
  }
  rules.push('-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS');
  return ["*nat", ...chains, ...rules, ...perService, "COMMIT", ""].join("\n");
}

/** Installs the rules in `ns` with one iptables-restore; resolves to the seconds it took. */
export async function installIptables(variant: IptablesVariant, ns: string, services: readonly Service[]): Promise<number> {
  const input = kubeProxyRules(services);
  const t0 = performance.now();
  await run(variant.restore, [], { ns, input, timeoutMs: 300_000 });
  return (performance.now() - t0) / 1000;
}

/** Number of rules in the nat table of `ns` (to check that the install did what it says). */
export async function natRuleCount(variant: IptablesVariant, ns: string): Promise<number> {
  const { stdout } = await run(variant.save, ["-t", "nat"], { ns });
  return stdout.split("\n").filter((l) => l.startsWith("-A ")).length;
}

/** Why this variant cannot run here, or undefined. */
export async function iptablesUnavailable(variant: IptablesVariant, ns: string): Promise<string | undefined> {
  try {
    await run(variant.save, ["-t", "nat"], { ns });
    return undefined;
  } catch (err) {
    return (err as Error).message.split("\n")[0];
  }
}
