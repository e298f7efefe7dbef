// The @dot-i/k8s-operator shell: its Operator base class gives the lifecycle (start → init,
// stop), the kubeConfig and the logger. Its event machinery is deliberately not used:
// watchResource re-lists nothing after a restart (deletes during a gap are missed), calls
// process.exit(1) on any watch error, and funnels every event through one global queue; its status
// helpers log and swallow errors. Instead init() starts the host (operator/host/host.ts), whose
// sources list+watch with resourceVersion resume, 410 re-lists and backoff, whose sinks coalesce
// per key and retry, and which writes only while holding the Lease.
import operatorModule from "@dot-i/k8s-operator";
import type { KubeConfig } from "@kubernetes/client-node";
import type { Logger } from "pino";
import { startOperator, type OperatorOptions, type RunningOperator } from "../host/host.ts";

// The package is CommonJS with `exports.default = Operator`: imported from ESM, the default
// import is module.exports, so the class is its `.default`.
const Operator = operatorModule.default;

/** The library's logger interface, fed into pino. */
function operatorLogger(log: Logger): { debug(m: string): void; info(m: string): void; warn(m: string): void; error(m: string): void } {
  const l = log.child({ component: "k8s-operator" });
  return { debug: (m) => l.debug(m), info: (m) => l.info(m), warn: (m) => l.warn(m), error: (m) => l.error(m) };
}

export type SluiceOperatorOptions = Omit<OperatorOptions, "kubeConfig"> & {
  /** Default: what the library loads itself (KUBECONFIG, ~/.kube/config, or in-cluster). */
  kubeConfig?: KubeConfig;
};

export class SluiceOperator extends Operator {
  private readonly options: SluiceOperatorOptions;
  private running: RunningOperator | undefined;

  constructor(options: SluiceOperatorOptions) {
    // The base constructor runs `new KubeConfig().loadFromDefault()`; an explicit config replaces it.
    super(operatorLogger(options.log));
    if (options.kubeConfig) this.kubeConfig = options.kubeConfig;
    this.options = options;
  }

  /** The KubeConfig in use (the library's own unless one was given). */
  get config(): KubeConfig {
    return this.kubeConfig;
  }

  /** The datapath distribution server, when it needs the operator's KubeConfig to be built first. */
  setDistribution(server: NonNullable<OperatorOptions["distribution"]>): void {
    this.options.distribution = server;
  }

  /** Called by the library's start(). */
  protected override async init(): Promise<void> {
    this.running = await startOperator({ ...this.options, kubeConfig: this.kubeConfig });
  }

  /** The running host, once start() resolved. */
  get host(): RunningOperator | undefined {
    return this.running;
  }

  /** The library's stop() is synchronous; this one also waits for the host to wind down. */
  async shutdown(): Promise<void> {
    super.stop();
    const r = this.running;
    this.running = undefined;
    await r?.stop();
  }

  override stop(): void {
    void this.shutdown();
  }
}
