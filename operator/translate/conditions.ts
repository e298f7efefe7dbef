// Condition builders. Every condition carries observedGeneration; lastTransitionTime is left to
// the status writer, which keeps the old time when nothing but the time would change.
import type { Condition } from "../api/objects.ts";

export function condition(type: string, ok: boolean | "Unknown", reason: string, message: string, generation: number): Condition {
  const status = ok === "Unknown" ? "Unknown" : ok ? "True" : "False";
  return { type, status, reason, message, observedGeneration: generation };
}

/** Reasons as the Gateway API v1.6 defines them, grouped by the object they belong to. */
export const Reason = {
  // shared
  Accepted: "Accepted",
  Programmed: "Programmed",
  ResolvedRefs: "ResolvedRefs",
  Pending: "Pending",
  Invalid: "Invalid",
  InvalidParameters: "InvalidParameters",
  RefNotPermitted: "RefNotPermitted",
  InvalidKind: "InvalidKind",
  UnsupportedValue: "UnsupportedValue",
  Conflicted: "Conflicted",
  // Gateway
  ListenersNotValid: "ListenersNotValid",
  UnsupportedAddress: "UnsupportedAddress",
  AddressNotAssigned: "AddressNotAssigned",
  AddressNotUsable: "AddressNotUsable",
  NoResources: "NoResources",
  InvalidClientCertificateRef: "InvalidClientCertificateRef",
  ConfigurationChanged: "ConfigurationChanged",
  // Listener
  UnsupportedProtocol: "UnsupportedProtocol",
  PortUnavailable: "PortUnavailable",
  HostnameConflict: "HostnameConflict",
  ProtocolConflict: "ProtocolConflict",
  NoConflicts: "NoConflicts",
  InvalidCertificateRef: "InvalidCertificateRef",
  InvalidRouteKinds: "InvalidRouteKinds",
  InvalidCACertificateRef: "InvalidCACertificateRef",
  InvalidCACertificateKind: "InvalidCACertificateKind",
  NoValidCACertificate: "NoValidCACertificate",
  // Route
  NotAllowedByListeners: "NotAllowedByListeners",
  NoMatchingListenerHostname: "NoMatchingListenerHostname",
  NoMatchingParent: "NoMatchingParent",
  BackendNotFound: "BackendNotFound",
  // Policy
  TargetNotFound: "TargetNotFound",
} as const;

export const CondType = {
  Accepted: "Accepted",
  Programmed: "Programmed",
  ResolvedRefs: "ResolvedRefs",
  Conflicted: "Conflicted",
  PartiallyInvalid: "PartiallyInvalid",
  InsecureFrontendValidationMode: "InsecureFrontendValidationMode",
} as const;
