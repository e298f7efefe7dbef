// The wrk output parser against outputs captured from wrk 4.1.0 (Debian 12), and the /proc CPU
// accounting against a child process that burns a known amount of CPU.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { test } from "node:test";
import { cpuTimeOf, descendantsOf, parseWrk } from "./load.ts";

// nginx proxy, all 200: microsecond latencies, no error lines.
const OK_US = `Running 2s test @ http://127.0.0.1:45359/api/x
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   379.43us  173.02us   4.20ms   93.39%
    Req/Sec    42.01k     3.65k   47.36k    80.95%
  Latency Distribution
     50%  360.00us
     75%  399.00us
     90%  468.00us
     99%  790.00us
  87724 requests in 2.10s, 12.47MB read
Requests/sec:  41778.13
Transfer/sec:      5.94MB
`;

// HAProxy answering 404 to an unrouted path: every response is a non-2xx.
const ALL_404 = `Running 2s test @ http://127.0.0.1:37289/apix
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   177.83us   78.84us   2.10ms   74.63%
    Req/Sec    86.97k     4.69k  101.89k    80.00%
  Latency Distribution
     50%  149.00us
     75%  181.00us
     90%  294.00us
     99%  339.00us
  172379 requests in 2.00s, 7.40MB read
  Non-2xx or 3xx responses: 172379
Requests/sec:  86165.24
Transfer/sec:      3.70MB
`;

// A server that drops a third of the requests (wrk --timeout 1s) and answers 503 to another third.
const TIMEOUTS_MS = `Running 4s test @ http://127.0.0.1:18099/
  1 threads and 20 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    34.32ms    4.36ms  41.19ms   68.75%
    Req/Sec    48.33     62.07   170.00     83.33%
  Latency Distribution
     50%   32.03ms
     75%   39.94ms
     90%   40.39ms
     99%   41.19ms
  40 requests in 4.01s, 5.14KB read
  Socket errors: connect 0, read 0, write 0, timeout 8
  Non-2xx or 3xx responses: 20
Requests/sec:      9.98
Transfer/sec:      1.28KB
`;

// Responses after 0.8 s and 1.5 s: wrk switches to seconds and pads with a trailing space.
const SECONDS = `Running 5s test @ http://127.0.0.1:18098/
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.13s   361.00ms   1.51s    53.33%
    Req/Sec     5.67      6.44    20.00     88.89%
  Latency Distribution
     50%  811.95ms
     75%    1.50s 
     90%    1.51s 
     99%    1.51s 
  15 requests in 5.01s, 1.80KB read
Requests/sec:      2.99
Transfer/sec:     368.25B
`;

// Not captured: built in the same format to set every socket error counter and use minutes.
const ALL_ERRORS = `Running 10s test @ http://127.0.0.1:8080/
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.50ms    1.00ms   1.20m    99.00%
    Req/Sec    10.00k     1.00k   12.00k    70.00%
  Latency Distribution
     50%    2.00ms
     75%    2.50ms
     90%    3.00ms
     99%    1.20m
  200000 requests in 10.00s, 20.00MB read
  Socket errors: connect 3, read 120, write 7, timeout 2
Requests/sec:  19998.50
Transfer/sec:      2.00MB
`;

const close = (actual: number, expected: number) => assert.ok(Math.abs(actual - expected) < 1e-9, `${actual} != ${expected}`);

test("microsecond latencies, no errors", () => {
  const r = parseWrk(OK_US);
  assert.equal(r.rps, 41778.13);
  assert.equal(r.requests, 87724);
  close(r.p50Ms, 0.36);
  close(r.p99Ms, 0.79);
  assert.equal(r.errors, 0);
  assert.equal(r.non2xx, 0);
});

test("non-2xx responses are counted apart from socket errors", () => {
  const r = parseWrk(ALL_404);
  assert.equal(r.non2xx, 172379);
  assert.equal(r.errors, 0);
  assert.equal(r.requests, 172379);
  close(r.p50Ms, 0.149);
});

test("millisecond latencies and timeouts", () => {
  const r = parseWrk(TIMEOUTS_MS);
  close(r.p50Ms, 32.03);
  close(r.p99Ms, 41.19);
  assert.equal(r.errors, 8);
  assert.equal(r.non2xx, 20);
  assert.equal(r.rps, 9.98);
  assert.equal(r.requests, 40);
});

test("second latencies with trailing spaces", () => {
  const r = parseWrk(SECONDS);
  close(r.p50Ms, 811.95);
  close(r.p99Ms, 1510);
  assert.equal(r.errors, 0);
});

test("all socket error kinds are summed; minutes", () => {
  const r = parseWrk(ALL_ERRORS);
  assert.equal(r.errors, 3 + 120 + 7 + 2);
  close(r.p50Ms, 2);
  close(r.p99Ms, 72_000);
});

test("output without a summary is rejected", () => {
  assert.throws(() => parseWrk("unable to connect to 127.0.0.1:1 Connection refused\n"), /not wrk output/);
  assert.throws(() => parseWrk(OK_US.replace(/^\s+99%.*$/m, "")), /99% latency/);
});

test("cpuTimeOf counts a process's live descendants", { skip: process.platform !== "linux" }, async () => {
  // A shell whose child burns ~0.3 s of CPU and then idles: the shell itself uses almost nothing.
  const burn = "const t = Date.now(); while (Date.now() - t < 300); setTimeout(() => {}, 10000);";
  const sh = spawn("/bin/sh", ["-c", `"${process.execPath}" -e '${burn}'; true`], { stdio: "ignore" });
  try {
    const pid = sh.pid as number;
    for (let i = 0; i < 100 && descendantsOf(pid).length === 0; i++) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 800));
    const cpu = cpuTimeOf([pid]);
    assert.ok(cpu >= 0.2, `expected >= 0.2 CPU s through the child, got ${cpu}`);
    assert.ok(cpuTimeOf([process.pid]) >= cpu, "the test process's tree includes the shell's");
  } finally {
    for (const p of descendantsOf(sh.pid as number)) process.kill(p, "SIGKILL");
    sh.kill("SIGKILL");
    await once(sh, "exit");
  }
});
