// `sluice operator`: run the operator against a cluster (cluster-wide; there is no --namespace).
import { Option, type Command } from "commander";
import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import path from "node:path";
import * as grpc from "@grpc/grpc-js";
import { KubeConfig } from "@kubernetes/client-node";
import type { Logger } from "pino";
import { certificateAuthenticator, startDistributionServer, tokenReviewAuthenticator, type DistributionServer } from "../sinks/distribution.ts";
import { OperatorMetrics } from "../shell/metrics.ts";
import { makeLogger } from "../run/cli.ts";
import { parseListen } from "../../datapath/echo/cli.ts";
import { SluiceOperator } from "../shell/operator.ts";
import type { Sink, SinkContext } from "./host.ts";
import { kubeSinks } from "./sinks.ts";

interface OperatorFlags {
  kubeconfig?: string;
  leaderElect: boolean;
  leaseNamespace?: string;
  leaseName: string;
  admin: string;
  logFormat: "text" | "json";
  discoveryInterval: string;
  distribution?: string;
  distributionTlsCert?: string;
  distributionTlsKey?: string;
  distributionClientCa?: string;
  agentServiceAccount: string[];
  agentTokenAudience?: string;
  agentCertSubject: string[];
}

interface DistributionFlags {
  at: { host: string; port: number };
  cert?: Buffer;
  key?: Buffer;
  clientCa?: Buffer;
}

/** Reads the distribution flags; problems are pushed onto `problems`. */
function distributionFlags(flags: OperatorFlags, problems: string[]): DistributionFlags | undefined {
  if (!flags.distribution) {
    if (flags.distributionTlsCert || flags.distributionTlsKey || flags.distributionClientCa) problems.push("--distribution-tls-* need --distribution");
    return undefined;
  }
  const at = parseListen(flags.distribution);
  if (!at) {
    problems.push(`--distribution must be host:port, got ${flags.distribution}`);
    return undefined;
  }
  const read = (flag: string, file: string | undefined): Buffer | undefined => {
    if (!file) return undefined;
    try {
      return readFileSync(file);
    } catch (err) {
      problems.push(`${flag} ${file}: ${(err as Error).message}`);
      return undefined;
    }
  };
  const out: DistributionFlags = { at };
  const cert = read("--distribution-tls-cert", flags.distributionTlsCert);
  const key = read("--distribution-tls-key", flags.distributionTlsKey);
  const clientCa = read("--distribution-client-ca", flags.distributionClientCa);
  if (Boolean(flags.distributionTlsCert) !== Boolean(flags.distributionTlsKey)) problems.push("--distribution-tls-cert and --distribution-tls-key go together");
  if (flags.distributionClientCa && !flags.distributionTlsCert) problems.push("--distribution-client-ca needs --distribution-tls-cert and --distribution-tls-key");
  if (cert) out.cert = cert;
  if (key) out.key = key;
  if (clientCa) out.clientCa = clientCa;
  return out;
}

async function startDistribution(d: DistributionFlags, flags: OperatorFlags, kubeConfig: KubeConfig, log: Logger, metrics: OperatorMetrics): Promise<DistributionServer> {
  const credentials = d.cert && d.key
    ? grpc.ServerCredentials.createSsl(d.clientCa ?? null, [{ cert_chain: d.cert, private_key: d.key }], Boolean(d.clientCa))
    : grpc.ServerCredentials.createInsecure();
  const allowed = flags.agentServiceAccount.map((sa) => {
    const [ns, name] = sa.split(":");
    return `system:serviceaccount:${ns}:${name}`;
  });
  return startDistributionServer({
    address: d.at.host, port: d.at.port, credentials, log: log.child({ component: "distribution" }), registry: metrics.registry,
    authenticate: tokenReviewAuthenticator(kubeConfig, { allowed, ...(flags.agentTokenAudience ? { audiences: [flags.agentTokenAudience] } : {}) }),
    ...(d.clientCa && flags.agentCertSubject.length ? { authenticateCertificate: certificateAuthenticator({ allowedSubjects: flags.agentCertSubject }) } : {}),
  });
}

const SA_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/** The namespace this pod runs in: POD_NAMESPACE (downward API), the ServiceAccount mount, or `default`. */
function ownNamespace(): string {
  if (process.env.POD_NAMESPACE) return process.env.POD_NAMESPACE;
  try {
    return readFileSync(SA_NAMESPACE_FILE, "utf8").trim() || "default";
  } catch {
    return "default";
  }
}

export interface OperatorCommandOptions {
  /** Builds the sinks; default the Kubernetes sinks (status writer, Service applier, Events). */
  sinks?: (ctx: SinkContext) => Sink[];
}

/** Registers `sluice operator`; `setCode` receives the exit code for bad flags. */
export function registerOperatorCommand(program: Command, setCode: (c: number) => void, options: OperatorCommandOptions = {}): void {
  program
    .command("operator")
    .description("Run the operator: watch the cluster's Gateway API objects, write statuses and Services, feed the datapath")
    .option("--kubeconfig <path>", "kubeconfig file (default: KUBECONFIG, ~/.kube/config, or the in-cluster ServiceAccount)")
    .option("--leader-elect", "campaign for a Lease so that only one replica writes (run 2 replicas with this)", false)
    .option("--lease-namespace <ns>", "namespace of the Lease (default: POD_NAMESPACE, the pod's own namespace, or default)")
    .option("--lease-name <name>", "name of the Lease", "sluice-operator")
    .option("--admin <host:port>", "operations endpoint: /healthz, /readyz, /metrics", "0.0.0.0:8080")
    .option("--discovery-interval <seconds>", "how often to look for CRDs installed or removed", "30")
    .option("--distribution <host:port>", "serve the datapath distribution stream to node agents here (off when not given)")
    .option("--distribution-tls-cert <file>", "server certificate of the distribution stream (required unless it listens on loopback)")
    .option("--distribution-tls-key <file>", "its private key")
    .option("--distribution-client-ca <file>", "require agent client certificates signed by this CA (mTLS)")
    .option("--agent-service-account <ns:name...>", "ServiceAccounts whose tokens agents may present (TokenReview)", ["sluice-system:sluice-agent"])
    .option("--agent-token-audience <aud>", "audience the agents' projected tokens must carry")
    .option("--agent-cert-subject <cn...>", "client certificate subjects (CN) accepted with --distribution-client-ca", [])
    .addOption(new Option("--log-format <format>", "log format on stderr").choices(["text", "json"]).default("json"))
    .action(async (flags: OperatorFlags) => {
      const admin = parseListen(flags.admin);
      const discovery = Number(flags.discoveryInterval);
      const problems = [
        ...(!admin ? [`--admin must be host:port, got ${flags.admin}`] : []),
        ...(!Number.isFinite(discovery) || discovery <= 0 ? [`--discovery-interval must be a positive number of seconds, got ${flags.discoveryInterval}`] : []),
        ...flags.agentServiceAccount.filter((sa) => !/^[a-z0-9-]+:[a-z0-9.-]+$/.test(sa)).map((sa) => `--agent-service-account must be namespace:name, got ${sa}`),
      ];
      const distribution = distributionFlags(flags, problems);
      let kubeConfig: KubeConfig | undefined;
      if (flags.kubeconfig) {
        try {
          kubeConfig = new KubeConfig();
          kubeConfig.loadFromFile(flags.kubeconfig);
          if (!kubeConfig.getCurrentCluster()) problems.push(`--kubeconfig ${flags.kubeconfig}: no current cluster`);
        } catch (err) {
          problems.push(`--kubeconfig ${flags.kubeconfig}: ${(err as Error).message}`);
        }
      }
      if (problems.length || !admin) {
        for (const p of problems) process.stderr.write(`sluice operator: ${p}\n`);
        setCode(2);
        return;
      }
      const log = makeLogger(flags.logFormat);
      const metrics = new OperatorMetrics();
      const operator = new SluiceOperator({
        log,
        metrics,
        ...(kubeConfig ? { kubeConfig } : {}),
        admin,
        ...(flags.leaderElect ? { leaderElection: { namespace: flags.leaseNamespace ?? ownNamespace(), name: flags.leaseName } } : {}),
        source: { discoveryIntervalMs: discovery * 1000 },
        sinks: options.sinks ?? ((ctx) => [kubeSinks(ctx)]),
      });
      // loadFromDefault falls back to http://localhost:8080 when it finds nothing at all.
      const found = flags.kubeconfig || process.env.KUBECONFIG || process.env.KUBERNETES_SERVICE_HOST || existsSync(path.join(homedir(), ".kube", "config"));
      if (!found || !operator.config.getCurrentCluster()) {
        process.stderr.write("sluice operator: no cluster configured (use --kubeconfig, KUBECONFIG, or run in a pod)\n");
        setCode(2);
        return;
      }
      if (distribution) {
        try {
          const server = await startDistribution(distribution, flags, operator.config, log, metrics);
          operator.setDistribution(server);
          log.info(`datapath distribution on ${distribution.at.host}:${server.port}${distribution.cert ? " (TLS)" : ""}`);
        } catch (err) {
          process.stderr.write(`sluice operator: --distribution ${flags.distribution}: ${(err as Error).message}\n`);
          setCode(2);
          return;
        }
      }
      log.info({ server: operator.config.getCurrentCluster()?.server, leaderElect: flags.leaderElect }, "starting the operator");
      try {
        await operator.start();
      } catch (err) {
        log.error(`cannot start: ${(err as Error).message}`);
        await operator.shutdown();
        setCode(1);
        return;
      }
      await new Promise<void>((resolve) => {
        const stop = (sig: string): void => {
          log.info(`${sig}: stopping`);
          void operator.shutdown().then(resolve);
        };
        process.once("SIGINT", () => stop("SIGINT"));
        process.once("SIGTERM", () => stop("SIGTERM"));
      });
    });
}
