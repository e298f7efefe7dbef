// A proxy worker process (see workers.ts): applies the configs the primary sends.
import { Proxy, type Limits } from "./server.ts";
import { createObserver } from "./observe.ts";
import type { FromWorker, ToWorker } from "./workers.ts";

const observer = createObserver(process.env.SLUICE_ACCESS_LOG ? { accessLogFd: 1 } : {});
const proxy = new Proxy({ observer, reusePort: true, limits: JSON.parse(process.env.SLUICE_LIMITS ?? "{}") as Partial<Limits> });
const reply = (m: FromWorker): void => void process.send?.(m);
// Configs are applied in arrival order, one at a time.
let chain = Promise.resolve();
process.on("message", (m: ToWorker) => {
  chain = chain.then(async () => {
    if (m.type === "apply") reply({ type: "applied", seq: m.seq, result: await proxy.apply(m.config) });
    else if (m.type === "metrics") reply({ type: "metrics", seq: m.seq, metrics: await observer.registry.getMetricsAsJSON() });
    else {
      await proxy.close(m.graceMs);
      reply({ type: "closed", seq: m.seq });
      process.exit(0);
    }
  });
});
// The primary owns shutdown; a terminal's Ctrl-C reaches the whole process group.
process.on("SIGINT", () => undefined);
process.on("SIGTERM", () => undefined);
reply({ type: "ready" });
