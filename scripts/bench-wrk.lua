-- wrk reporting for scripts/bench-http.sh: one line with req/s, p50/p95/p99 (ms), errors
-- (non-2xx answers, timeouts, connection failures) and the request count.
done = function(summary, latency, requests)
  local e = summary.errors
  local errors = e.connect + e.read + e.write + e.status + e.timeout
  io.write(string.format("RESULT %.0f %.2f %.2f %.2f %d %d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    errors, summary.requests))
end
