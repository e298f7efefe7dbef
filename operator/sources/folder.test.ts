import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { Observable } from "rxjs";
import type { K8sObject } from "../api/objects.ts";
import type { SourceEvent } from "./events.ts";
import { readManifests, sourceName, watchManifests } from "./folder.ts";

const NOW = new Date("2024-05-01T12:00:00.000Z");

async function tempDir(t: TestContext): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "sluice-folder-"));
  t.after(() => fs.rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Replaces a file in one step (as editors do), so a watcher never sees it half-written. */
async function replaceFile(file: string, text: string): Promise<void> {
  const tmp = path.join(path.dirname(file), `.tmp-${Math.random().toString(36).slice(2)}`);
  await fs.writeFile(tmp, text);
  await fs.rename(tmp, file);
}

const service = (name: string, extra = ""): string => `apiVersion: v1\nkind: Service\nmetadata:\n  name: ${name}\n${extra}`;

/** Subscribes, and hands out the events received since the previous call once `done` holds for them. */
function recorder(t: TestContext, events$: Observable<SourceEvent>) {
  const received: SourceEvent[] = [];
  let cursor = 0;
  let wake = (): void => {};
  let failure: unknown;
  const subscription = events$.subscribe({
    next: (e) => { received.push(e); wake(); },
    error: (err: unknown) => { failure = err; wake(); },
  });
  t.after(() => subscription.unsubscribe());
  return {
    subscription,
    next(done: (batch: SourceEvent[]) => boolean, timeoutMs = 1500): Promise<SourceEvent[]> {
      return new Promise((resolve, reject) => {
        // Only a guard against a hang: the wait ends as soon as the events arrive.
        const timer = setTimeout(() => reject(new Error(`timed out; received ${describe(received.slice(cursor)).join(", ")}`)), timeoutMs);
        wake = () => {
          if (failure !== undefined) reject(failure as Error);
          const batch = received.slice(cursor);
          if (!done(batch)) return;
          clearTimeout(timer);
          cursor = received.length;
          wake = () => {};
          resolve(batch);
        };
        wake();
      });
    },
  };
}

function describe(events: SourceEvent[]): string[] {
  return events.map((e) =>
    e.type === "SYNCED" ? "SYNCED"
    : e.type === "ERROR" ? `ERROR ${path.basename(e.error.file)}:${e.error.line}`
    : `${e.type} ${e.kind} ${e.object.metadata.namespace ?? ""}/${e.object.metadata.name}`);
}

const has = (text: string) => (batch: SourceEvent[]): boolean => describe(batch).includes(text);
const objectOf = (batch: SourceEvent[], type: string, name: string): K8sObject => {
  const e = batch.find((x) => x.type === type && "object" in x && x.object.metadata.name === name);
  assert.ok(e && "object" in e, `${type} ${name} in ${describe(batch).join(", ")}`);
  return e.object;
};

test("readManifests reads files and directories recursively, in sorted order", async (t) => {
  const dir = await tempDir(t);
  await fs.mkdir(path.join(dir, "b", "nested"), { recursive: true });
  await fs.mkdir(path.join(dir, ".hidden"));
  await fs.writeFile(path.join(dir, "b", "nested", "z.yml"), service("z"));
  await fs.writeFile(path.join(dir, "b", "y.json"), JSON.stringify({ apiVersion: "v1", kind: "Service", metadata: { name: "y" } }));
  await fs.writeFile(path.join(dir, "a.yaml"), `${service("a")}---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n`);
  await fs.writeFile(path.join(dir, "notes.txt"), service("explicit"));
  await fs.writeFile(path.join(dir, ".hidden", "h.yaml"), service("hidden"));
  // How a mounted ConfigMap looks: visible symlinks into a hidden directory. Read once, via the link.
  await fs.symlink(path.join(".hidden", "h.yaml"), path.join(dir, "linked.yaml"));

  // notes.txt is read only because it is named; the order is the paths', not the arguments'.
  const parsed = await readManifests([path.join(dir, "notes.txt"), dir]);
  assert.deepEqual(parsed.errors, []);
  assert.deepEqual(parsed.objects.map((o) => [o.object.metadata.name, path.relative(dir, o.file), o.line]), [
    ["a", "a.yaml", 1],
    ["z", path.join("b", "nested", "z.yml"), 1],
    ["y", path.join("b", "y.json"), 1],
    ["hidden", "linked.yaml", 1],
    ["explicit", "notes.txt", 1],
  ]);
  assert.deepEqual(parsed.ignored.map((i) => [path.basename(i.file), i.line]), [["a.yaml", 6]]);
});

test("readManifests: the first of two definitions wins, the second is an error naming the first", async (t) => {
  const dir = await tempDir(t);
  await fs.writeFile(path.join(dir, "1.yaml"), `${service("dup", "spec: {type: ClusterIP}\n")}---\n${service("other")}`);
  await fs.writeFile(path.join(dir, "2.yaml"), `# comment\n${service("dup", "spec: {type: NodePort}\n")}---\n${service("dup", "  namespace: elsewhere\n")}`);
  const parsed = await readManifests([dir]);
  assert.deepEqual(parsed.objects.map((o) => `${o.object.metadata.namespace}/${o.object.metadata.name}`), ["default/dup", "default/other", "elsewhere/dup"]);
  assert.deepEqual(parsed.objects[0]?.object.spec, { type: "ClusterIP" });
  assert.deepEqual(parsed.errors, [{
    file: path.join(dir, "2.yaml"), line: 2, column: 1,
    message: `Service default/dup is already defined at ${path.join(dir, "1.yaml")}:1; this definition is ignored`,
  }]);
});

test("readManifests: a path that does not exist is an error at line 0", async (t) => {
  const dir = await tempDir(t);
  const missing = path.join(dir, "missing");
  const parsed = await readManifests([missing]);
  assert.deepEqual(parsed, { objects: [], ignored: [], errors: [{ file: missing, line: 0, column: 0, message: "no such file or directory" }] });
});

test("watchManifests emits ADDED for everything, then SYNCED, with API-server metadata", async (t) => {
  const dir = await tempDir(t);
  await fs.writeFile(path.join(dir, "a.yaml"), `${service("a")}---\n${service("b", "  generation: 7\n  uid: given\n  creationTimestamp: '2020-01-01T00:00:00Z'\n")}`);
  const events = recorder(t, watchManifests([dir], { debounceMs: 20, now: () => NOW }));
  const initial = await events.next(has("SYNCED"));
  assert.deepEqual(describe(initial), ["ADDED Service default/a", "ADDED Service default/b", "SYNCED"]);
  assert.deepEqual(initial.at(-1), { type: "SYNCED", source: sourceName([dir]) });
  const a = objectOf(initial, "ADDED", "a").metadata;
  const b = objectOf(initial, "ADDED", "b").metadata;
  assert.match(a.uid ?? "", /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.deepEqual({ ...a, uid: "" }, { name: "a", namespace: "default", uid: "", generation: 1, resourceVersion: "1", creationTimestamp: NOW.toISOString() });
  assert.deepEqual(b, { name: "b", namespace: "default", uid: "given", generation: 7, resourceVersion: "2", creationTimestamp: "2020-01-01T00:00:00Z" });
});

test("watchManifests: modifications bump generation only when spec changes; unchanged content is not re-emitted", async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, "svc.yaml");
  await fs.writeFile(file, service("s", "spec: {type: ClusterIP}\n"));
  const events = recorder(t, watchManifests([dir], { debounceMs: 20, now: () => NOW }));
  const added = objectOf(await events.next(has("SYNCED")), "ADDED", "s");

  await replaceFile(file, service("s", "spec: {type: NodePort}\n"));
  const specChanged = objectOf(await events.next(has("MODIFIED Service default/s")), "MODIFIED", "s");
  assert.deepEqual(specChanged.spec, { type: "NodePort" });
  assert.equal(specChanged.metadata.generation, 2);
  assert.equal(specChanged.metadata.uid, added.metadata.uid);
  assert.equal(specChanged.metadata.creationTimestamp, added.metadata.creationTimestamp);
  assert.ok(Number(specChanged.metadata.resourceVersion) > Number(added.metadata.resourceVersion));

  await replaceFile(file, service("s", "  labels: {tier: web}\nspec: {type: NodePort}\n"));
  const labelled = objectOf(await events.next(has("MODIFIED Service default/s")), "MODIFIED", "s");
  assert.deepEqual(labelled.metadata.labels, { tier: "web" });
  assert.equal(labelled.metadata.generation, 2);
  assert.ok(Number(labelled.metadata.resourceVersion) > Number(specChanged.metadata.resourceVersion));

  // Same content, different text: nothing to say. The next change proves the re-read happened.
  await replaceFile(file, `# reformatted\n${service("s", "  labels:\n    tier: web\nspec:\n  type: NodePort\n")}`);
  await replaceFile(path.join(dir, "sentinel.yaml"), service("sentinel"));
  const later = await events.next(has("ADDED Service default/sentinel"));
  assert.deepEqual(describe(later), ["ADDED Service default/sentinel"]);
});

test("watchManifests: files added and deleted, objects renamed", async (t) => {
  const dir = await tempDir(t);
  await fs.mkdir(path.join(dir, "sub"));
  const file = path.join(dir, "sub", "a.yaml");
  await fs.writeFile(file, service("a"));
  const events = recorder(t, watchManifests([dir], { debounceMs: 20, now: () => NOW }));
  const original = objectOf(await events.next(has("SYNCED")), "ADDED", "a");

  await replaceFile(path.join(dir, "sub", "b.yaml"), `${service("b")}---\n${service("c")}`);
  assert.deepEqual(describe(await events.next(has("ADDED Service default/c"))), ["ADDED Service default/b", "ADDED Service default/c"]);

  await fs.rm(path.join(dir, "sub", "b.yaml"));
  const deleted = await events.next((b) => b.length >= 2);
  assert.deepEqual(describe(deleted), ["DELETED Service default/b", "DELETED Service default/c"]);

  await replaceFile(file, service("renamed"));
  const renamed = await events.next(has("ADDED Service default/renamed"));
  assert.deepEqual(describe(renamed), ["DELETED Service default/a", "ADDED Service default/renamed"]);
  assert.equal(objectOf(renamed, "DELETED", "a").metadata.uid, original.metadata.uid);
  assert.notEqual(objectOf(renamed, "ADDED", "renamed").metadata.uid, original.metadata.uid);
});

test("watchManifests: a parse error is reported and the file keeps its last good objects", async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, "app.yaml");
  await fs.writeFile(file, `${service("one")}---\n${service("two")}`);
  const events = recorder(t, watchManifests([dir], { debounceMs: 20, now: () => NOW }));
  await events.next(has("SYNCED"));

  // Line 4 breaks, and object "two" vanishes from the text: neither may delete anything.
  await replaceFile(file, "apiVersion: v1\nkind: Service\nmetadata:\n  name: one: broken\n");
  const broken = await events.next((b) => b.some((e) => e.type === "ERROR"));
  assert.deepEqual(broken, [{
    type: "ERROR", source: sourceName([dir]),
    error: { file, line: 4, column: 9, message: "Nested mappings are not allowed in compact mappings" },
  }]);

  // Other files still work meanwhile, and the broken file's objects are still there.
  await replaceFile(path.join(dir, "other.yaml"), service("three"));
  assert.deepEqual(describe(await events.next(has("ADDED Service default/three"))), ["ADDED Service default/three"]);

  await replaceFile(file, service("one", "spec: {type: NodePort}\n"));
  const fixed = await events.next(has("MODIFIED Service default/one"));
  assert.deepEqual(describe(fixed), ["DELETED Service default/two", "MODIFIED Service default/one"]);
});

test("watchManifests: a single file is watched, also when an editor replaces it", async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, "one.yaml");
  await fs.writeFile(file, service("a"));
  await fs.writeFile(path.join(dir, "neighbour.yaml"), service("not-watched"));
  const events = recorder(t, watchManifests([file], { debounceMs: 20, now: () => NOW }));
  assert.deepEqual(describe(await events.next(has("SYNCED"))), ["ADDED Service default/a", "SYNCED"]);
  await replaceFile(file, service("a", "spec: {type: NodePort}\n"));
  assert.deepEqual(describe(await events.next(has("MODIFIED Service default/a"))), ["MODIFIED Service default/a"]);
  await replaceFile(file, service("a", "spec: {type: ClusterIP}\n"));
  assert.deepEqual(describe(await events.next(has("MODIFIED Service default/a"))), ["MODIFIED Service default/a"]);
});

test("watchManifests: a path created after subscribing is picked up", async (t) => {
  const dir = await tempDir(t);
  const target = path.join(dir, "later", "manifests");
  const events = recorder(t, watchManifests([target], { debounceMs: 20, now: () => NOW }));
  assert.deepEqual(describe(await events.next(has("SYNCED"))), ["ERROR manifests:0", "SYNCED"]);

  await fs.mkdir(target, { recursive: true });
  await replaceFile(path.join(target, "a.yaml"), service("a"));
  assert.deepEqual(describe(await events.next(has("ADDED Service default/a"))), ["ADDED Service default/a"]);
});

test("watchManifests: unsubscribing closes the watchers", async (t) => {
  const dir = await tempDir(t);
  await fs.writeFile(path.join(dir, "a.yaml"), service("a"));
  const watchers = (): number => process.getActiveResourcesInfo().filter((r) => r === "FSEventWrap").length;
  const before = watchers();
  const events = recorder(t, watchManifests([dir], { debounceMs: 20 }));
  await events.next(has("SYNCED"));
  assert.ok(watchers() > before);
  events.subscription.unsubscribe();
  // Handles are released on the next turn of the event loop.
  const deadline = Date.now() + 1000;
  while (watchers() > before && Date.now() < deadline) await new Promise((r) => setImmediate(r));
  assert.equal(watchers(), before);
});

test("watchManifests: a file replaced by rename and then deleted is seen deleted, also in a new subdirectory", async (t) => {
  // Node's recursive fs.watch on Linux loses the unlink of a file that was replaced by rename.
  const dir = await tempDir(t);
  const events = recorder(t, watchManifests([dir], { debounceMs: 10, now: () => NOW }));
  await events.next(has("SYNCED"));
  for (const sub of ["", "later"]) {
    const d = path.join(dir, sub);
    await fs.mkdir(d, { recursive: true });
    const file = path.join(d, "x.yaml");
    await replaceFile(file, service(`x${sub}`));
    await events.next(has(`ADDED Service default/x${sub}`));
    await replaceFile(file, service(`x${sub}`, "spec: {ports: [{port: 81}]}\n"));
    await events.next(has(`MODIFIED Service default/x${sub}`));
    await fs.rm(file);
    await events.next(has(`DELETED Service default/x${sub}`));
  }
});

test("watchManifests: a file renamed into place is read at once; an in-place write waits for the writer to settle", async (t) => {
  const dir = await tempDir(t);
  await fs.writeFile(path.join(dir, "old.yaml"), service("old"));
  const events = recorder(t, watchManifests([dir], { debounceMs: 1500, now: () => NOW }));
  await events.next(has("SYNCED"));
  let t0 = performance.now();
  await replaceFile(path.join(dir, "renamed.yaml"), service("renamed"));
  await events.next(has("ADDED Service default/renamed"));
  assert.ok(performance.now() - t0 < 1000, "a rename does not wait for the in-place debounce");
  t0 = performance.now();
  await fs.writeFile(path.join(dir, "old.yaml"), service("old", "spec: {type: NodePort}\n"));
  await events.next(has("MODIFIED Service default/old"), 5000);
  assert.ok(performance.now() - t0 >= 1400, "an in-place write is read only after the debounce");
});

test("watchManifests: only the files a change names are read again; a mounted ConfigMap's link swap is still seen", async (t) => {
  const dir = await tempDir(t);
  // A ConfigMap volume: visible links into `..data`, itself a link to a timestamped directory.
  const mount = async (version: string, text: string): Promise<void> => {
    await fs.mkdir(path.join(dir, `..${version}`));
    await fs.writeFile(path.join(dir, `..${version}`, "cm.yaml"), text);
    await fs.symlink(`..${version}`, path.join(dir, "..data_tmp"));
    await fs.rename(path.join(dir, "..data_tmp"), path.join(dir, "..data"));
  };
  await mount("v1", service("cm"));
  await fs.symlink(path.join("..data", "cm.yaml"), path.join(dir, "cm.yaml"));
  await fs.writeFile(path.join(dir, "plain.yaml"), service("plain"));
  const events = recorder(t, watchManifests([dir], { debounceMs: 10, now: () => NOW }));
  await events.next(has("SYNCED"));
  await mount("v2", service("cm", "spec: {type: NodePort}\n"));
  const swapped = await events.next(has("MODIFIED Service default/cm"));
  assert.deepEqual(objectOf(swapped, "MODIFIED", "cm").spec, { type: "NodePort" });
  await replaceFile(path.join(dir, "plain.yaml"), service("plain", "spec: {type: NodePort}\n"));
  const batch = await events.next(has("MODIFIED Service default/plain"));
  assert.deepEqual(describe(batch), ["MODIFIED Service default/plain"]);
});

test("watchManifests: a folder given as a relative path sees in-place writes, renames and removals", async (t) => {
  const dir = await tempDir(t);
  await fs.writeFile(path.join(dir, "a.yaml"), service("a"));
  const relative = path.relative(process.cwd(), dir);
  assert.ok(!path.isAbsolute(relative));
  const events = recorder(t, watchManifests([relative], { debounceMs: 10, now: () => NOW }));
  await events.next(has("SYNCED"));
  await fs.writeFile(path.join(dir, "a.yaml"), service("a", "spec: {type: NodePort}\n"));
  assert.deepEqual(objectOf(await events.next(has("MODIFIED Service default/a")), "MODIFIED", "a").spec, { type: "NodePort" });
  await replaceFile(path.join(dir, "b.yaml"), service("b"));
  await events.next(has("ADDED Service default/b"));
  await fs.rm(path.join(dir, "a.yaml"));
  assert.deepEqual(describe(await events.next(has("DELETED Service default/a"))), ["DELETED Service default/a"]);
});
