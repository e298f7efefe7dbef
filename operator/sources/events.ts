// What a source (a folder of manifests, the API server) tells the store: watch events in the
// Kubernetes sense, plus when its initial state is complete and problems users should see.
import type { KindName } from "../api/kinds.ts";
import type { K8sObject } from "../api/objects.ts";

export type SourceEvent =
  | { type: "ADDED" | "MODIFIED" | "DELETED"; kind: KindName; object: K8sObject }
  /** The source has emitted its initial state. */
  | { type: "SYNCED"; source: string }
  | { type: "ERROR"; source: string; error: ManifestError };

/** A problem in a manifest, located for an editor: 1-based line and column (0 when unknown). */
export interface ManifestError {
  file: string;
  line: number;
  column: number;
  message: string;
}
