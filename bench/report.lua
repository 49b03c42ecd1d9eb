-- wrk reporter: one machine-readable line the harness parses.
-- requests duration_us errors p50_us p99_us p999_us
done = function(summary, latency, requests)
   local e = summary.errors
   local errors = e.connect + e.read + e.write + e.timeout + e.status
   io.write(string.format("RESULT %d %d %d %d %d %d\n",
      summary.requests, summary.duration, errors,
      latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
