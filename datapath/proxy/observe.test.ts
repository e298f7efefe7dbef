import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { AggregatorRegistry } from "prom-client";
import { createObserver } from "./observe.ts";
import type { Req, Res } from "./handler.ts";

// What the observer reads of a finished exchange.
const req = { method: "GET", url: "/x", httpVersion: "1.1", headers: { host: "h" }, socket: { remoteAddress: "127.0.0.1" } } as unknown as Req;
const answered = (statusCode: number): Res => ({ statusCode, writableEnded: true, writableFinished: true }) as unknown as Res;

describe("request metrics", () => {
  it("counts by route, backend and code, as the counter reads them at each scrape", async () => {
    const o = createObserver();
    const a = { route: "HTTPRoute/ns/a/0", backend: "ns/svc:80" };
    for (let i = 0; i < 3; i++) o.request(req, answered(200), a, performance.now());
    o.request(req, answered(503), a, performance.now());
    o.request(req, { statusCode: 200, writableEnded: false, writableFinished: false } as unknown as Res, { route: "", backend: "" }, performance.now());
    const text = await o.registry.metrics();
    assert.match(text, /sluice_proxy_requests_total\{route="HTTPRoute\/ns\/a\/0",backend="ns\/svc:80",code="200"\} 3\n/);
    assert.match(text, /sluice_proxy_requests_total\{route="HTTPRoute\/ns\/a\/0",backend="ns\/svc:80",code="503"\} 1\n/);
    assert.match(text, /sluice_proxy_requests_total\{route="",backend="",code="0"\} 1\n/);
    assert.match(text, /sluice_proxy_request_duration_seconds_count\{route="HTTPRoute\/ns\/a\/0"\} 4\n/);
    // A second scrape neither loses nor counts twice.
    o.request(req, answered(200), a, performance.now());
    assert.match(await o.registry.metrics(), /code="200"\} 4\n/);
    assert.match(await o.registry.metrics(), /code="200"\} 4\n/);
  });

  it("workers' counts add up in the aggregated scrape", async () => {
    const workers = [createObserver(), createObserver()];
    const a = { route: "r", backend: "b" };
    workers.forEach((o, i) => {
      for (let n = 0; n <= i; n++) o.request(req, answered(200), a, performance.now());
    });
    const merged = await AggregatorRegistry.aggregate(await Promise.all(workers.map((o) => o.registry.getMetricsAsJSON()))).metrics();
    assert.match(merged, /sluice_proxy_requests_total\{route="r",backend="b",code="200"\} 3\n/);
  });
});
