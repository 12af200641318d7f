-- wrk script for the end-to-end section: each request's Host header names
-- one of N tenants (t0000.localhost ...), uniformly at random, from a list
-- built once per wrk thread so the load costs wrk the same for every target.
-- Usage: wrk -s benchmarks/hosts.lua URL -- N SEED

local requests = {}
local next_request = 0

function init(args)
  local tenants = tonumber(args[1]) or 1000
  math.randomseed(tonumber(args[2]) or 14)
  for i = 1, 8192 do
    local host = string.format("t%04d.localhost", math.random(0, tenants - 1))
    requests[i] = wrk.format("GET", "/notes/17", { Host = host })
  end
end

function request()
  next_request = next_request % #requests + 1
  return requests[next_request]
end
