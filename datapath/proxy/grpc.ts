// gRPC answers the proxy makes itself: a trailers-only response (HTTP 200, the status in headers),
// as gRPC clients expect, mapped from the HTTP status the same error would have
// (https://github.com/grpc/grpc/blob/master/doc/http-grpc-status-mapping.md, reversed).
import type { Res } from "./handler.ts";

export const GrpcStatus = {
  INTERNAL: 13,
  UNIMPLEMENTED: 12,
  UNAVAILABLE: 14,
  DEADLINE_EXCEEDED: 4,
  RESOURCE_EXHAUSTED: 8,
  INVALID_ARGUMENT: 3,
  PERMISSION_DENIED: 7,
} as const;

export function grpcStatusFor(httpStatus: number): number {
  switch (httpStatus) {
    case 400: return GrpcStatus.INVALID_ARGUMENT;
    case 403: return GrpcStatus.PERMISSION_DENIED;
    case 404: return GrpcStatus.UNIMPLEMENTED;
    case 413: return GrpcStatus.RESOURCE_EXHAUSTED;
    case 429: return GrpcStatus.UNAVAILABLE;
    case 502: case 503: return GrpcStatus.UNAVAILABLE;
    case 504: return GrpcStatus.DEADLINE_EXCEEDED;
    default: return GrpcStatus.INTERNAL;
  }
}

export function sendGrpcError(res: Res, code: number, message: string): void {
  if (res.headersSent) return void res.destroy();
  const status = { "grpc-status": String(code), "grpc-message": encodeURIComponent(message) };
  if ("stream" in res) {
    // Node's HTTP/2 compatibility API never ends a stream on its HEADERS frame, so a
    // trailers-only answer would reach clients as headers plus an empty DATA frame, which
    // gRPC clients reject (INTERNAL). Empty headers and the status as real trailers instead.
    res.writeHead(200, { "content-type": "application/grpc" });
    res.addTrailers(status);
    res.end();
    return;
  }
  res.writeHead(200, { "content-type": "application/grpc", ...status });
  res.end();
}

const STATUS_HEADERS = ["grpc-status", "grpc-message", "grpc-status-details-bin"];

/**
 * A backend's trailers-only answer (grpc-status in the response headers) cannot be relayed as
 * such through Node's HTTP/2 compatibility API (see sendGrpcError): the status moves from the
 * headers to the trailers. Returns the moved fields, or undefined when there are none.
 */
export function takeStatusHeaders(headers: Record<string, string | string[] | undefined>): Record<string, string | string[]> | undefined {
  if (headers["grpc-status"] === undefined) return undefined;
  const out: Record<string, string | string[]> = {};
  for (const k of STATUS_HEADERS) {
    const v = headers[k];
    if (v === undefined) continue;
    out[k] = v;
    delete headers[k];
  }
  return out;
}
