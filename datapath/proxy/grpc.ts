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
  res.writeHead(200, {
    "content-type": "application/grpc",
    "grpc-status": String(code),
    "grpc-message": encodeURIComponent(message),
  });
  res.end();
}
