// The Kubernetes sinks together, as the operator host calls them: once per translation with the
// result and the snapshot it was computed from. Everything is asynchronous and coalesced inside;
// update() never blocks and never throws.
import type { KubeConfig } from "@kubernetes/client-node";
import type { Registry } from "prom-client";
import type { Snapshot } from "../store/snapshot.ts";
import type { TranslateResult } from "../translate/output.ts";
import { EventRecorder } from "./events.ts";
import type { BackoffOptions, SinkLogger } from "./kube.ts";
import { ServiceApplier } from "./service.ts";
import { StatusWriter } from "./status.ts";

export interface KubeSinksOptions {
  kubeConfig: KubeConfig;
  /** Leader gate, checked before every write: a follower writes nothing. */
  isLeader?: () => boolean;
  controllerName?: string;
  fieldManager?: string;
  statusConcurrency?: number;
  serviceConcurrency?: number;
  backoff?: BackoffOptions;
  log?: SinkLogger;
  registry?: Registry;
}

export class KubeSinks {
  readonly events: EventRecorder;
  readonly status: StatusWriter;
  readonly services: ServiceApplier;

  constructor(opts: KubeSinksOptions) {
    const common = {
      kubeConfig: opts.kubeConfig,
      ...(opts.isLeader ? { isLeader: opts.isLeader } : {}),
      ...(opts.log ? { log: opts.log } : {}),
      ...(opts.registry ? { registry: opts.registry } : {}),
    };
    const controller = opts.controllerName ? { controllerName: opts.controllerName } : {};
    this.events = new EventRecorder({ ...common, ...(opts.controllerName ? { reportingController: opts.controllerName } : {}) });
    this.status = new StatusWriter({
      ...common, ...controller, events: this.events,
      ...(opts.statusConcurrency ? { concurrency: opts.statusConcurrency } : {}),
      ...(opts.backoff ? { backoff: opts.backoff } : {}),
    });
    this.services = new ServiceApplier({
      ...common, ...controller, events: this.events,
      ...(opts.fieldManager ? { fieldManager: opts.fieldManager } : {}),
      ...(opts.serviceConcurrency ? { concurrency: opts.serviceConcurrency } : {}),
      ...(opts.backoff ? { backoff: opts.backoff } : {}),
    });
  }

  /** Hands one translation to every sink. Call it with each new (result, snapshot), leader or not. */
  update(result: TranslateResult, snapshot: Snapshot): void {
    this.services.update(result, snapshot);
    this.status.update(result, snapshot);
  }

  /** Resolves when everything queued so far has been written (tests, graceful shutdown). */
  async idle(): Promise<void> {
    await Promise.all([this.services.idle(), this.status.idle()]);
    await this.events.idle();
  }

  stop(): void {
    this.status.stop();
    this.services.stop();
    this.events.stop();
  }
}
