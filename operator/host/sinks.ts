// Adapters from the sinks in operator/sinks/ to the host's Sink interface.
import type { KubeSinksOptions } from "../sinks/sinks.ts";
import { KubeSinks } from "../sinks/sinks.ts";
import type { DistributionServer } from "../sinks/distribution.ts";
import type { Sink, SinkContext } from "./host.ts";
import { GATEWAY_GROUP } from "../api/kinds.ts";

/**
 * Status writer, Service applier and Events (operator/sinks/sinks.ts). They queue and coalesce
 * per object internally and check the leader gate before every write, so apply() only hands over.
 */
export function kubeSinks(ctx: SinkContext, opts: Partial<Omit<KubeSinksOptions, "kubeConfig" | "isLeader">> = {}): Sink & { sinks: KubeSinks } {
  const sinks = new KubeSinks({ kubeConfig: ctx.kubeConfig, isLeader: ctx.isLeader, log: ctx.log, registry: ctx.metrics.registry, ...opts });
  // A node that rejects a Gateway's config is something its owner must see: an Event on the Gateway.
  const nacks = ctx.distribution?.nacks$.subscribe((n) => {
    ctx.log.warn({ node: n.node, version: n.systemVersion, gateways: Object.keys(n.resources) }, `datapath rejected: ${n.error}`);
    for (const name of Object.keys(n.resources)) {
      const [namespace, gw] = name.split("/");
      if (!namespace || !gw) continue;
      sinks.events.record(
        { apiVersion: `${GATEWAY_GROUP}/v1`, kind: "Gateway", namespace, name: gw },
        "Warning", "DatapathRejected", `Node ${n.node} could not apply this Gateway's configuration (version ${n.systemVersion}): ${n.error}`,
      );
    }
  });
  return {
    name: "kube",
    sinks,
    apply: (update) => {
      sinks.update(update.result, update.snapshot);
      return Promise.resolve();
    },
    close: () => {
      nacks?.unsubscribe();
      sinks.stop();
      return Promise.resolve();
    },
  };
}

/**
 * The datapath distribution stream (operator/sinks/distribution.ts): the leader publishes each
 * translation's datapath config; a standby refuses agent streams so that agents land on the leader.
 */
export function distributionSink(server: DistributionServer): Sink {
  return {
    name: "distribution",
    apply: (update) => {
      server.publish(update.snapshot.version, update.result.datapath);
      return Promise.resolve();
    },
    leading: (leader) => server.setActive(leader),
    close: () => server.close(),
  };
}
