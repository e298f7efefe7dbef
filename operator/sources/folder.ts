// A source backed by manifest files: reads files and directories of YAML/JSON, and watches them,
// playing the API server's part (watch events, uid, generation, resourceVersion) for them.
import { randomUUID } from "node:crypto";
import { lstatSync, readFileSync, watch, type FSWatcher } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { isDeepStrictEqual } from "node:util";
import { Observable, Subject, concatMap, debounce, map, merge, of, timer } from "rxjs";
import { keyOf, type K8sObject } from "../api/objects.ts";
import type { KindName } from "../api/kinds.ts";
import type { ManifestError, SourceEvent } from "./events.ts";
import { parseManifests, type ParsedManifests, type ParsedObject } from "./manifests.ts";

const MANIFEST_FILE = /\.(ya?ml|json)$/i;

interface FileManifests {
  file: string;
  text: string;
  parsed: ParsedManifests;
}

/** The name a folder source gives itself in SYNCED and ERROR events. */
export function sourceName(paths: readonly string[]): string {
  return paths.join(",");
}

/** Reads every manifest under `paths` (files, or directories read recursively). */
export async function readManifests(paths: string[]): Promise<ParsedManifests> {
  return combine(await readFiles(await listFiles(paths)));
}

export interface WatchOptions {
  /**
   * Quiet time after the last in-place write before re-reading; default 50 ms. A file renamed into
   * place (how editors, GitOps tools and `kubectl`-style writers replace files) is complete, so it
   * is read at once.
   */
  debounceMs?: number;
  /** Clock for creationTimestamp; default the wall clock. */
  now?: () => Date;
}

/**
 * ADDED for every object, then SYNCED; afterwards ADDED / MODIFIED / DELETED as files change.
 * A file that stops parsing keeps its last good objects (and its errors are reported as ERROR):
 * a half-saved file must not delete what it defined.
 */
export function watchManifests(paths: string[], opts: WatchOptions = {}): Observable<SourceEvent> {
  const debounceMs = opts.debounceMs ?? 50;
  const now = opts.now ?? (() => new Date());
  const source = sourceName(paths);

  return new Observable<SourceEvent>((subscriber) => {
    const changes$ = new Subject<void>();
    // What changed since the last read: the files the events named (with the time of their last
    // in-place write, which may still be under way; 0 for a rename, which is complete), or
    // everything when an event named none.
    const dirty = new Map<string, number>();
    let everything = false;
    const writing = (): boolean => [...dirty.values()].some((t) => t > 0);
    const watchers = createWatchers(paths, (file, rename) => {
      if (file === undefined) everything = true;
      // Hidden files are never read (editors' and writers' temporary files): their writes need no settling.
      else dirty.set(file, rename || path.basename(file).startsWith(".") ? 0 : performance.now());
      changes$.next();
    });
    const differ = createDiffer(now);
    const lastGood = new Map<string, ParsedObject[]>();
    const cache = new Map<string, FileManifests>();
    let reported = new Set<string>();
    // The last full walk; a change that names only plain files is read against it.
    let listing: Listing | undefined;

    const refresh = async (initial: boolean): Promise<SourceEvent[]> => {
      // A file written in place less than debounceMs ago waits for the read its own debounce brings.
      // (Node's timers run on a millisecond loop clock, so the debounce may fire a little before
      // debounceMs by performance.now(): allow for that.)
      const settled = performance.now() - debounceMs + 2;
      // (0 marks a complete file; early in a process `settled` is still negative.)
      const unsettled = new Set([...dirty].filter(([, t]) => t > 0 && t > settled).map(([file]) => file));
      const changed = initial || everything ? undefined : new Set([...dirty.keys()].filter((f) => !unsettled.has(f)));
      for (const file of dirty.keys()) if (!unsettled.has(file)) dirty.delete(file);
      everything = false;
      let read = changed && listing ? readNamed(listing, cache, changed, watchers) : undefined;
      let watchErrors: ManifestError[] = [];
      if (!read) {
        // Watch before reading, so a change made while reading is not missed.
        watchErrors = (await watchers.reconcile()).errors;
        listing = await listFiles(paths);
        read = await readFiles(listing, cache, changed, unsettled);
        // A path appearing or vanishing while the watchers were being set up moves what must be
        // watched; once re-targeted, read everything again to catch what happened in between.
        if ((await watchers.reconcile()).changed) {
          everything = true;
          changes$.next();
        }
      }
      const kept = keepLastGood(read, lastGood);
      const manifests = combine({ ...kept, errors: [...kept.errors, ...watchErrors] });
      const events: SourceEvent[] = differ(manifests.objects);
      // Each distinct problem is reported once, not again on every unrelated change.
      const current = new Map(manifests.errors.map((e) => [JSON.stringify(e), e]));
      for (const [id, error] of current) if (!reported.has(id)) events.push({ type: "ERROR", source, error });
      reported = new Set(current.keys());
      if (initial) events.push({ type: "SYNCED", source });
      // A file still being written gets its own read once it settles, even if no event follows.
      if (unsettled.size > 0) changes$.next();
      return events;
    };

    // The initial read, then one re-read per burst of changes, never two at once.
    const subscription = merge(of(true), changes$.pipe(debounce(() => (writing() ? timer(debounceMs) : afterPendingEvents$)), map(() => false)))
      .pipe(
        concatMap((initial) => refresh(initial)),
        concatMap((events) => events),
      )
      .subscribe(subscriber);

    return () => {
      subscription.unsubscribe();
      watchers.close();
      changes$.complete();
    };
  });
}

/** Fires once the events already delivered with this one have been handled (setImmediate runs after the poll phase). */
const afterPendingEvents$ = new Observable<void>((subscriber) => {
  const handle = setImmediate(() => {
    subscriber.next();
    subscriber.complete();
  });
  return () => clearImmediate(handle);
});

// ---- reading ----

interface FileSet {
  files: FileManifests[];
  /** Paths that could not be read at all. */
  errors: ManifestError[];
  /** Directories that exist but could not be listed: what they held is unknown, not gone. */
  unreadable: string[];
}

/**
 * Reads the listed files. With `changed` (the files watch events named since the last read), a
 * cached file not among them is taken from the cache unread: a change never waits for the whole
 * folder to be read again. A file in `unsettled` (still being written) keeps its cached version. Symbolic links are always read: a mounted ConfigMap swaps its files by
 * renaming a hidden directory their links point into, and no event names the links themselves.
 */
async function readFiles(
  listing: Listing, cache?: Map<string, FileManifests>, changed?: ReadonlySet<string>, unsettled?: ReadonlySet<string>,
): Promise<FileSet> {
  const { files, errors, unreadable, volatile } = listing;
  // Read concurrently: one file at a time makes every change wait for the whole folder.
  const read = await Promise.all(files.map(async (file): Promise<FileManifests | undefined> => {
    const known = cache?.get(file);
    if (unsettled?.has(file)) return known;
    if (known && changed && !changed.has(file) && !volatile.has(file)) return known;
    return readOne(file, cache);
  }));
  const out = read.filter((f): f is FileManifests => f !== undefined);
  if (cache) {
    const listed = new Set(files);
    for (const file of cache.keys()) if (!listed.has(file)) cache.delete(file);
  }
  return { files: out, errors, unreadable };
}

/** Reads and parses one file (parsing again only if its text changed); undefined when it is gone. */
async function readOne(file: string, cache?: Map<string, FileManifests>): Promise<FileManifests | undefined> {
  let text: string;
  try {
    text = await fs.readFile(file, "utf8");
  } catch (err) {
    return unreadableFile(file, err);
  }
  return remember(file, text, cache);
}

function readOneSync(file: string, cache: Map<string, FileManifests>): FileManifests | undefined {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    return unreadableFile(file, err);
  }
  return remember(file, text, cache);
}

function unreadableFile(file: string, err: unknown): FileManifests | undefined {
  // Gone between listing and reading: it is simply not there any more.
  if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
  return { file, text: "", parsed: { objects: [], errors: [{ file, line: 0, column: 0, message: errorMessage(err) }], ignored: [] } };
}

function remember(file: string, text: string, cache?: Map<string, FileManifests>): FileManifests {
  const cached = cache?.get(file);
  const entry = cached && cached.text === text ? cached : { file, text, parsed: parseManifests(text, file) };
  cache?.set(file, entry);
  return entry;
}

/**
 * The common change — files written, renamed into place or removed inside a watched directory —
 * read without walking the folder or re-targeting watchers: only the named files (and the links,
 * which no event names). Undefined when the change needs the full walk: a directory or a link
 * appeared or went, a path named explicitly changed, or the last walk had errors.
 *
 * Synchronously: a change names a few small files, which take microseconds to read, where each
 * promise-based call waits for a thread-pool round trip (a readFile makes four), milliseconds on a
 * busy machine — and this is the path between an edit and the proxy serving it.
 */
function readNamed(listing: Listing, cache: Map<string, FileManifests>, changed: ReadonlySet<string>, watchers: Watchers): FileSet | undefined {
  if (listing.errors.length > 0 || listing.unreadable.length > 0) return undefined;
  const inRoot = (file: string): boolean => listing.roots.some((root) => {
    const rel = path.relative(root, file);
    return rel !== "" && !rel.startsWith("..") && !path.isAbsolute(rel);
  });
  const toRead = new Set(listing.volatile);
  for (const file of changed) {
    if (!inRoot(file) || listing.volatile.has(file)) return undefined;
    let stat;
    try {
      stat = lstatSync(file, { throwIfNoEntry: false });
    } catch {
      return undefined;
    }
    if (stat === undefined) {
      // Gone: a file we read, or one we never cared about (a writer's renamed temp file); a
      // directory we watched needs the walk.
      if (watchers.watching(file)) return undefined;
      cache.delete(file);
    } else if (!stat.isFile()) {
      return undefined;
    } else if (isManifestName(file)) {
      toRead.add(file);
    }
  }
  // An unreadable file is reported (its cached version stays for a later read), as the walk does.
  const failed = new Map<string, FileManifests>();
  for (const file of toRead) {
    const entry = readOneSync(file, cache);
    if (entry === undefined) cache.delete(file);
    else if (cache.get(file) !== entry) failed.set(file, entry);
  }
  const files = [...new Set([...cache.keys(), ...failed.keys()])].sort();
  return { files: files.map((f) => failed.get(f) ?? (cache.get(f) as FileManifests)), errors: [], unreadable: [] };
}

const isManifestName = (file: string): boolean => {
  const name = path.basename(file);
  return !name.startsWith(".") && MANIFEST_FILE.test(name);
};

interface Listing {
  files: string[];
  errors: ManifestError[];
  /** Directories that exist but could not be listed. */
  unreadable: string[];
  /** Files read on every change: links (a ConfigMap swaps their targets unnamed) and files named explicitly. */
  volatile: Set<string>;
  /** The given paths that are directories. */
  roots: string[];
}

/** The manifest files under `paths`. */
async function listFiles(paths: readonly string[]): Promise<Listing> {
  const files = new Set<string>();
  const volatile = new Set<string>();
  const errors: ManifestError[] = [];
  const unreadable: string[] = [];
  const roots: string[] = [];

  const walk = async (dir: string): Promise<void> => {
    let entries;
    try {
      entries = await fs.readdir(dir, { withFileTypes: true });
    } catch (err) {
      // A subdirectory removed while walking is simply gone.
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
      errors.push({ file: dir, line: 0, column: 0, message: errorMessage(err) });
      unreadable.push(dir);
      return;
    }
    for (const entry of entries) {
      // Hidden entries are skipped: editor lock files, and the `..data` / `..2024_…` copies a
      // mounted ConfigMap keeps next to its files.
      if (entry.name.startsWith(".")) continue;
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) await walk(full);
      else if (MANIFEST_FILE.test(entry.name) && entry.isFile()) files.add(full);
      else if (MANIFEST_FILE.test(entry.name) && entry.isSymbolicLink() && (await isFile(full))) {
        files.add(full);
        volatile.add(full);
      }
    }
  };

  for (const p of paths) {
    const stat = await fs.stat(p).catch((err: unknown) => {
      errors.push({ file: p, line: 0, column: 0, message: errorMessage(err) });
      return undefined;
    });
    if (!stat) continue;
    // A file named explicitly is read whatever its extension.
    if (stat.isDirectory()) {
      roots.push(path.normalize(p));
      await walk(path.normalize(p));
    } else {
      files.add(path.normalize(p));
      volatile.add(path.normalize(p));
    }
  }
  // Sorted, so the first of two definitions of an object is always the same one.
  return { files: [...files].sort(), errors, unreadable, volatile, roots };
}

async function isFile(p: string): Promise<boolean> {
  try {
    return (await fs.stat(p)).isFile();
  } catch {
    return false;
  }
}

function errorMessage(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e.code === "ENOENT" ? "no such file or directory" : String(e.message ?? err);
}

const identity = (o: ParsedObject): string => `${o.kind}/${keyOf(o.object)}`;

/** Merges per-file results; an object defined twice keeps its first definition. */
function combine({ files, errors }: FileSet): ParsedManifests {
  const out: ParsedManifests = { objects: [], errors: [...errors], ignored: [] };
  const first = new Map<string, ParsedObject>();
  for (const { parsed } of files) {
    out.errors.push(...parsed.errors);
    out.ignored.push(...parsed.ignored);
    for (const o of parsed.objects) {
      const id = identity(o);
      const earlier = first.get(id);
      if (earlier) {
        out.errors.push({
          file: o.file, line: o.line, column: 1,
          message: `${o.kind} ${keyOf(o.object)} is already defined at ${earlier.file}:${earlier.line}; this definition is ignored`,
        });
        continue;
      }
      first.set(id, o);
      out.objects.push(o);
    }
  }
  return out;
}

/**
 * Files with errors contribute the objects of their last error-free version. A file first seen
 * with errors contributes what did parse, and keeps that until it parses cleanly. Files in a
 * directory that could not be listed keep theirs too.
 */
function keepLastGood({ files, errors, unreadable }: FileSet, lastGood: Map<string, ParsedObject[]>): FileSet {
  const kept: FileManifests[] = files.map((f) => {
    const good = lastGood.get(f.file);
    if (f.parsed.errors.length === 0 || good === undefined) return f;
    return { ...f, parsed: { ...f.parsed, objects: good } };
  });
  const listed = new Set(files.map((f) => f.file));
  for (const [file, objects] of lastGood) {
    if (listed.has(file)) continue;
    if (unreadable.some((dir) => file.startsWith(dir + path.sep))) {
      kept.push({ file, text: "", parsed: { objects, errors: [], ignored: [] } });
    } else {
      lastGood.delete(file);
    }
  }
  for (const f of kept) lastGood.set(f.file, f.parsed.objects);
  kept.sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : 0));
  return { files: kept, errors, unreadable };
}

// ---- diffing, with API-server metadata ----

interface Emitted {
  kind: KindName;
  /** As read from the file: what changes are detected on. */
  raw: K8sObject;
  /** As emitted, with server-side metadata. */
  object: K8sObject;
}

function createDiffer(now: () => Date): (next: ParsedObject[]) => SourceEvent[] {
  const emitted = new Map<string, Emitted>();
  let resourceVersion = 0;
  const withMetadata = (raw: K8sObject, prev: Emitted | undefined): K8sObject => {
    const m = raw.metadata;
    const pm = prev?.object.metadata;
    const generation = prev
      ? (pm?.generation ?? 1) + (isDeepStrictEqual(raw.spec, prev.raw.spec) ? 0 : 1)
      : (m.generation ?? 1);
    return {
      ...raw,
      metadata: {
        ...m,
        uid: m.uid ?? pm?.uid ?? randomUUID(),
        creationTimestamp: m.creationTimestamp ?? pm?.creationTimestamp ?? now().toISOString(),
        generation,
        resourceVersion: String(++resourceVersion),
      },
    };
  };

  return (next) => {
    const events: SourceEvent[] = [];
    const byId = new Map(next.map((o) => [identity(o), o]));
    for (const [id, prev] of emitted) {
      if (byId.has(id)) continue;
      emitted.delete(id);
      const object = { ...prev.object, metadata: { ...prev.object.metadata, resourceVersion: String(++resourceVersion) } };
      events.push({ type: "DELETED", kind: prev.kind, object });
    }
    for (const [id, o] of byId) {
      const prev = emitted.get(id);
      if (prev && isDeepStrictEqual(prev.raw, o.object)) continue;
      const object = withMetadata(o.object, prev);
      emitted.set(id, { kind: o.kind, raw: o.object, object });
      events.push({ type: prev ? "MODIFIED" : "ADDED", kind: o.kind, object });
    }
    return events;
  };
}

// ---- watching ----

interface WatchTarget {
  dir: string;
  recursive: boolean;
  ino: number;
}

interface Watchers {
  /** Opens and closes watchers to match what exists now; says whether any changed, and what could not be watched. */
  reconcile(): Promise<{ changed: boolean; errors: ManifestError[] }>;
  /** Whether `dir` is a directory being watched. */
  watching(dir: string): boolean;
  close(): void;
}

/** `onChange(file, rename)`: the file an event named (undefined: unknown), and whether it was a rename or creation rather than a write. */
function createWatchers(paths: readonly string[], onChange: (file: string | undefined, rename: boolean) => void): Watchers {
  const open = new Map<string, FSWatcher>();
  let closed = false;
  return {
    async reconcile() {
      const wanted = new Map<string, WatchTarget>();
      for (const p of paths) {
        // The inode is part of the identity: a directory deleted and recreated needs a new watcher.
        for (const target of await watchTargets(p)) wanted.set(`${target.dir}\0${target.recursive}\0${target.ino}`, target);
      }
      const errors: ManifestError[] = [];
      let changed = false;
      if (closed) return { changed, errors };
      for (const [id, watcher] of open) {
        if (wanted.has(id)) continue;
        watcher.close();
        open.delete(id);
        changed = true;
      }
      for (const [id, { dir, recursive }] of wanted) {
        if (open.has(id)) continue;
        try {
          const watcher = watch(dir, { recursive }, (type, name) => onChange(name ? path.join(dir, name) : undefined, type === "rename"));
          // A watched directory going away surfaces as an error: re-reading re-targets the watch.
          watcher.on("error", () => onChange(undefined, false));
          open.set(id, watcher);
          changed = true;
        } catch (err) {
          errors.push({ file: dir, line: 0, column: 0, message: `cannot watch: ${errorMessage(err)}` });
        }
      }
      return { changed, errors };
    },
    watching: (dir) => [...open.keys()].some((id) => id.startsWith(`${dir}\0`)),
    close() {
      closed = true;
      for (const watcher of open.values()) watcher.close();
      open.clear();
    },
  };
}

/**
 * A directory is watched with one watcher per directory in its tree: Node's recursive watch on
 * Linux loses a file's deletion once the file has been replaced by a rename (the way editors and
 * GitOps tools write). A file is watched through its directory, because editors replace files
 * rather than rewrite them; a missing path through its nearest existing ancestor, so that its
 * creation is noticed.
 */
async function watchTargets(p: string): Promise<WatchTarget[]> {
  // Named as the paths were given (relative or not), so that events name files as the walk does.
  const resolved = path.join(p, ".");
  const stat = await fs.stat(resolved).catch(() => undefined);
  if (stat?.isDirectory()) {
    const out: WatchTarget[] = [];
    const walk = async (dir: string, ino: number): Promise<void> => {
      out.push({ dir, recursive: false, ino });
      const entries = await fs.readdir(dir, { withFileTypes: true }).catch(() => []);
      for (const e of entries) {
        if (!e.isDirectory()) continue;
        const sub = path.join(dir, e.name);
        const s = await fs.stat(sub).catch(() => undefined);
        if (s) await walk(sub, s.ino);
      }
    };
    await walk(resolved, stat.ino);
    return out;
  }
  for (let dir = path.dirname(resolved); ; dir = path.dirname(dir)) {
    const s = await fs.stat(dir).catch(() => undefined);
    if (s?.isDirectory()) return [{ dir, recursive: false, ino: s.ino }];
    if (dir === path.dirname(dir)) return [];
  }
}
