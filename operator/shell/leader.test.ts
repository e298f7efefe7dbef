// Leader election against the fake API server's real Lease objects (resourceVersion conflicts included).
import { test } from "node:test";
import assert from "node:assert/strict";
import { startFakeApiServer, type FakeApiServer } from "../fakeapi/server.ts";
import { kubeApi } from "../sources/kubeapi.ts";
import { captureLog, kubeConfigFor, until } from "../sources/kubetestkit.ts";
import { LeaderElector } from "./leader.ts";

const TIMING = { leaseDurationMs: 1000, renewDeadlineMs: 700, retryPeriodMs: 100 };
const LEASE = ["coordination.k8s.io/v1", "Lease", "sluice-system", "sluice-operator"] as const;

interface Candidate {
  elector: LeaderElector;
  started: number;
  stopped: number;
}

function candidate(fake: FakeApiServer, identity: string, timing = TIMING): Candidate {
  const c: Candidate = { elector: undefined as unknown as LeaderElector, started: 0, stopped: 0 };
  c.elector = new LeaderElector({
    api: kubeApi(kubeConfigFor(fake.url, fake.token)), namespace: "sluice-system", identity, log: captureLog().log, ...timing,
    onStartedLeading: () => c.started++,
    onStoppedLeading: () => c.stopped++,
  });
  return c;
}

async function fakeWithNamespace(): Promise<FakeApiServer> {
  const fake = await startFakeApiServer();
  fake.apply({ apiVersion: "v1", kind: "Namespace", metadata: { name: "sluice-system" } });
  return fake;
}

type LeaseSpec = { holderIdentity?: string; leaseDurationSeconds?: number; renewTime?: string; acquireTime?: string; leaseTransitions?: number };
const leaseSpec = (fake: FakeApiServer): LeaseSpec => (fake.get(...LEASE) as { spec?: LeaseSpec } | undefined)?.spec ?? {};

test("three candidates: exactly one leader at every moment; the Lease says who", async () => {
  const fake = await fakeWithNamespace();
  const cs = ["a", "b", "c"].map((id) => candidate(fake, id));
  try {
    for (const c of cs) c.elector.start();
    assert.ok(await until(() => cs.some((c) => c.elector.isLeader())));
    // Sample for a while: never two leaders, and the leader keeps renewing.
    const end = Date.now() + 1500;
    let firstRenew = "";
    while (Date.now() < end) {
      assert.equal(cs.filter((c) => c.elector.isLeader()).length, 1);
      firstRenew ||= leaseSpec(fake).renewTime ?? "";
      await new Promise((r) => setTimeout(r, 20));
    }
    const leader = cs.find((c) => c.elector.isLeader())!;
    const spec = leaseSpec(fake);
    assert.equal(spec.holderIdentity, leader.elector.identity);
    assert.equal(spec.leaseDurationSeconds, 1);
    assert.equal(spec.leaseTransitions, 0);
    assert.match(spec.renewTime ?? "", /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    assert.ok(spec.acquireTime && spec.renewTime! > firstRenew, "renewTime advances");
    assert.equal(leader.started, 1);
    for (const c of cs) if (c !== leader) assert.equal(c.elector.holder(), leader.elector.identity);
    // Concurrent candidates raced on resourceVersion: the losers saw 409 Conflicts.
    assert.ok(fake.requests.some((r) => r.path.endsWith("/leases/sluice-operator") && r.method === "PUT" && r.status === 200));
  } finally {
    await Promise.all(cs.map((c) => c.elector.stop(false)));
    await fake.close();
  }
});

test("a crashed leader (no release) is replaced once the lease duration has passed", async () => {
  const fake = await fakeWithNamespace();
  const a = candidate(fake, "a");
  const b = candidate(fake, "b");
  try {
    a.elector.start();
    assert.ok(await until(() => a.elector.isLeader()));
    b.elector.start();
    await new Promise((r) => setTimeout(r, 300));
    assert.ok(!b.elector.isLeader());
    // Crash: stop renewing without releasing.
    const t0 = Date.now();
    await a.elector.stop(false);
    assert.ok(await until(() => b.elector.isLeader(), 3000));
    const took = Date.now() - t0;
    // Not before the Lease expired (a's last renewal was at most one retry period before the crash).
    assert.ok(took >= TIMING.leaseDurationMs - 2 * TIMING.retryPeriodMs && took < TIMING.leaseDurationMs + 1000, `took over after ${took} ms`);
    assert.equal(leaseSpec(fake).leaseTransitions, 1);
  } finally {
    await a.elector.stop(false);
    await b.elector.stop(false);
    await fake.close();
  }
});

test("a leader that stops releases the Lease: a standby takes over at once, long before it would expire", async () => {
  const fake = await fakeWithNamespace();
  const slow = { leaseDurationMs: 4000, renewDeadlineMs: 3000, retryPeriodMs: 100 };
  const a = candidate(fake, "a", slow);
  const b = candidate(fake, "b", slow);
  try {
    a.elector.start();
    assert.ok(await until(() => a.elector.isLeader()));
    b.elector.start();
    await new Promise((r) => setTimeout(r, 200));
    const t0 = Date.now();
    await a.elector.stop(true);
    assert.equal(a.stopped, 1);
    assert.equal(leaseSpec(fake).holderIdentity, "");
    assert.ok(await until(() => b.elector.isLeader(), 3000));
    assert.ok(Date.now() - t0 < 1500, `released Lease taken after ${Date.now() - t0} ms (lease duration 4 s)`);
    assert.equal(leaseSpec(fake).holderIdentity, "b");
    assert.equal(leaseSpec(fake).leaseTransitions, 1);
  } finally {
    await a.elector.stop(false);
    await b.elector.stop(false);
    await fake.close();
  }
});

test("a leader whose Lease is taken over steps down at once", async () => {
  const fake = await fakeWithNamespace();
  const a = candidate(fake, "a");
  try {
    a.elector.start();
    assert.ok(await until(() => a.elector.isLeader()));
    const lease = fake.get(...LEASE)!;
    fake.apply({ ...lease, spec: { ...(lease.spec as object), holderIdentity: "intruder", leaseDurationSeconds: 60, renewTime: new Date().toISOString() } } as never);
    const t0 = Date.now();
    assert.ok(await until(() => !a.elector.isLeader(), 2000));
    assert.ok(Date.now() - t0 < 2 * TIMING.retryPeriodMs + 500);
    assert.equal(a.stopped, 1);
    assert.equal(a.elector.holder(), "intruder");
    // It keeps campaigning but cannot win while the intruder's Lease is valid.
    await new Promise((r) => setTimeout(r, 500));
    assert.ok(!a.elector.isLeader());
  } finally {
    await a.elector.stop(false);
    await fake.close();
  }
});

test("a leader that cannot renew steps down by the renew deadline, before the Lease expires", async () => {
  const fake = await fakeWithNamespace();
  const a = candidate(fake, "a");
  try {
    a.elector.start();
    assert.ok(await until(() => a.elector.isLeader()));
    const t0 = Date.now();
    fake.failNext({ status: 500, count: 1000, match: (r) => r.path.includes("/leases") });
    assert.ok(await until(() => !a.elector.isLeader(), 2000));
    const took = Date.now() - t0;
    // By the renew deadline, and in any case before the Lease could expire and someone else lead.
    assert.ok(took < TIMING.leaseDurationMs, `stepped down after ${took} ms (deadline ${TIMING.renewDeadlineMs}, lease ${TIMING.leaseDurationMs})`);
    assert.equal(a.stopped, 1);
  } finally {
    await a.elector.stop(false);
    await fake.close();
  }
});
