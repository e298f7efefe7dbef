// The N services every datapath in the L4 benchmark is programmed with. All have a TCP port 80;
// the measured one, always the LAST (the worst case of a linear rule walk, as a Service created
// after the others sits in kube-proxy's KUBE-SERVICES chain), also has the iperf3 port and points
// at the real backend. The others point at addresses nothing answers on, one backend each.
import { ADDR, HTTP_PORT, IPERF_PORT, vipOf } from "./topology.ts";

export type ServicePort = { name: string; port: number; backendPort: number };
export type Service = { name: string; vip: string; ports: ServicePort[]; backend: string };

export function servicesFor(n: number): Service[] {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`service count must be a positive integer, got ${n}`);
  const out: Service[] = [];
  for (let i = 0; i < n - 1; i++) {
    out.push({
      name: `svc-${i}`,
      vip: vipOf(i),
      ports: [{ name: "http", port: HTTP_PORT, backendPort: 8080 }],
      backend: `10.250.${Math.floor(i / 250)}.${(i % 250) + 1}`,
    });
  }
  out.push(measuredService(n));
  return out;
}

/** The service the load goes to: index n - 1. */
export function measuredService(n: number): Service {
  return {
    name: `svc-${n - 1}`,
    vip: vipOf(n - 1),
    // iperf3 first, so the HTTP port (the new-connection measure) is the very last rule.
    ports: [
      { name: "iperf", port: IPERF_PORT, backendPort: IPERF_PORT },
      { name: "http", port: HTTP_PORT, backendPort: HTTP_PORT },
    ],
    backend: ADDR.backend,
  };
}
