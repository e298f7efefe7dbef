// BackendTLSPolicy: which Service ports are reached over TLS, with what SNI, CAs and SANs.
// Evaluated once per snapshot (policies and CA ConfigMaps change rarely); per Gateway only the
// ancestors differ.
import { generationOf, keyOf, objectKey, type BackendTLSPolicy, type Condition } from "../api/objects.ts";
import type { Snapshot } from "../store/snapshot.ts";
import { condition, CondType, Reason } from "./conditions.ts";
import type { BackendTLS } from "./output.ts";
import { checkCaConfigMap } from "./pem.ts";
import { byAge } from "./precedence.ts";

export interface PolicyEval {
  key: string;
  policy: BackendTLSPolicy;
  accepted: Condition;
  resolvedRefs: Condition;
  /** Present when the policy is usable. */
  tls?: Omit<BackendTLS, "clientCertificate">;
  /** Why backends covered by an unusable policy fail. */
  problem?: string;
}

export class BackendTLSPolicies {
  readonly evals = new Map<string, PolicyEval>();
  /** `namespace/service` or `namespace/service#portName` → every policy targeting it, winner first. */
  private readonly allByTarget = new Map<string, PolicyEval[]>();

  constructor(snapshot: Snapshot, schemaErrors: (p: BackendTLSPolicy) => string[]) {
    const groups = new Map<string, BackendTLSPolicy[]>();
    for (const p of snapshot.objects.BackendTLSPolicy.values()) {
      const gen = generationOf(p);
      const errs = schemaErrors(p);
      if (errs.length) {
        const msg = `Invalid: ${errs.join("; ")}`;
        this.evals.set(keyOf(p), {
          key: keyOf(p), policy: p, problem: msg,
          accepted: condition(CondType.Accepted, false, Reason.Invalid, msg, gen),
          resolvedRefs: condition(CondType.ResolvedRefs, true, Reason.ResolvedRefs, "References not evaluated", gen),
        });
        continue;
      }
      this.evals.set(keyOf(p), evaluate(p, snapshot));
      const ns = p.metadata.namespace ?? "default";
      for (const t of p.spec?.targetRefs ?? []) {
        if ((t.group ?? "") !== "" || t.kind !== "Service") continue;
        const target = objectKey(ns, t.name) + (t.sectionName ? `#${t.sectionName}` : "");
        const list = groups.get(target);
        if (list) { if (!list.includes(p)) list.push(p); } else groups.set(target, [p]);
      }
    }
    // The oldest policy per target wins; the others are Conflicted (on every target they lose).
    for (const [target, list] of groups) {
      list.sort(byAge);
      const [winner, ...losers] = list;
      this.allByTarget.set(target, list.map((p) => this.evals.get(keyOf(p)) as PolicyEval));
      for (const l of losers) {
        const e = this.evals.get(keyOf(l)) as PolicyEval;
        const msg = `Conflicts with BackendTLSPolicy ${keyOf(winner as BackendTLSPolicy)} on ${target}`;
        e.accepted = condition(CondType.Accepted, false, Reason.Conflicted, msg, generationOf(l));
        delete e.tls;
        e.problem ??= msg;
      }
    }
  }

  /** The policy for one Service port: a sectioned policy wins over a whole-Service one. */
  forPort(serviceKey: string, portName: string | undefined): PolicyEval | undefined {
    return this.allForPort(serviceKey, portName)[0];
  }

  /** Every policy that targets the Service port, winners and losers alike (the winner first). */
  allForPort(serviceKey: string, portName: string | undefined): PolicyEval[] {
    return [...(portName ? (this.allByTarget.get(`${serviceKey}#${portName}`) ?? []) : []), ...(this.allByTarget.get(serviceKey) ?? [])];
  }
}

function evaluate(p: BackendTLSPolicy, snapshot: Snapshot): PolicyEval {
  const gen = generationOf(p);
  const ns = p.metadata.namespace ?? "default";
  const v = p.spec?.validation;
  const base = { key: keyOf(p), policy: p };
  const fail = (reason: string, message: string): PolicyEval => ({
    ...base, problem: message,
    accepted: condition(CondType.Accepted, false, Reason.NoValidCACertificate, message, gen),
    resolvedRefs: condition(CondType.ResolvedRefs, false, reason, message, gen),
  });
  let cas: string[] | "System";
  const refs = v?.caCertificateRefs ?? [];
  if (v?.wellKnownCACertificates) {
    if (refs.length) return fail(Reason.InvalidCACertificateRef, "caCertificateRefs and wellKnownCACertificates are mutually exclusive");
    if (v.wellKnownCACertificates !== "System") return fail(Reason.InvalidCACertificateRef, `wellKnownCACertificates ${v.wellKnownCACertificates} is not supported`);
    cas = "System";
  } else {
    if (refs.length === 0) return fail(Reason.InvalidCACertificateRef, "Either caCertificateRefs or wellKnownCACertificates must be set");
    cas = [];
    for (const ref of refs) {
      const key = objectKey(ns, ref.name);
      if ((ref.group ?? "") !== "" || ref.kind !== "ConfigMap") return fail(Reason.InvalidKind, `CA certificate reference ${ref.group ? ref.group + "/" : ""}${ref.kind} ${key} is not a ConfigMap`);
      const cm = snapshot.objects.ConfigMap.get(key);
      if (!cm) return fail(Reason.InvalidCACertificateRef, `ConfigMap ${key} does not exist`);
      const checked = checkCaConfigMap(cm);
      if (!checked.ok) return fail(Reason.InvalidCACertificateRef, `ConfigMap ${key} ${checked.message}`);
      cas.push(checked.value);
    }
  }
  const sans = (v?.subjectAltNames ?? []).map((s) => ({
    type: s.type === "URI" ? ("URI" as const) : ("Hostname" as const),
    value: (s.type === "URI" ? s.uri : s.hostname) ?? "",
  }));
  return {
    ...base,
    accepted: condition(CondType.Accepted, true, Reason.Accepted, "Policy is accepted", gen),
    resolvedRefs: condition(CondType.ResolvedRefs, true, Reason.ResolvedRefs, "All references are resolved", gen),
    tls: { sni: v?.hostname ?? "", caCertificates: cas, subjectAltNames: sans, policy: keyOf(p) },
  };
}
