-- wrk script for scripts/bench_ingest: realistic, deterministic page views for Footfall.
--
-- Usage: wrk -t1 -c64 -d10s -s scripts/wrk/ingest.lua URL -- mode=single seed=42
--   mode=single   one seed-API page view per POST (/api/v1/events); 200 = accepted
--   mode=batch    a JSON array of `batch` seed page views per POST, cycling through `bodies`
--                 pre-built bodies; the accepted count is read from the answer's "accepted"
--   mode=collect  the tracker's compact body (/api/v1/collect, text/plain); 202 without
--                 X-Footfall-Ignored = accepted
-- Other arguments: seed (default 42), batch (100), bodies (8), visitors (5000), site
-- ("localhost"), host (page host, "localhost").
--
-- Page paths (200, Zipf-distributed), referrers (none, internal, Google, Hacker News,
-- Facebook, ...), real browser user agents (no bots) and public client IPs (sent as
-- X-Forwarded-For: start the server with FOOTFALL_SERVER_TRUSTED_PROXIES=127.0.0.1) all come
-- from math.random seeded with `seed`, so two runs send the same sequence of requests.
--
-- Each thread counts answers per status code in `response`; `done` prints one line
--   BENCH_JSON {...}
-- with wrk's summary, latency percentiles (microseconds), status counts, accepted events,
-- requests sent and answered (sent - answered = requests in flight when wrk stopped).

local cfg = {
  mode = "single",
  seed = 42,
  batch = 100,
  bodies = 8,
  visitors = 5000,
  site = "localhost",
  host = "localhost",
}

local USER_AGENTS = {
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 Safari/537.36",
  "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
  "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
  "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.4; rv:125.0) Gecko/20100101 Firefox/125.0",
  "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:124.0) Gecko/20100101 Firefox/124.0",
  "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Safari/605.1.15",
  "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Safari/605.1.15",
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.67",
  "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 Safari/537.36 Edg/123.0.2420.97",
  "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Mobile/15E148 Safari/604.1",
  "Mozilla/5.0 (iPhone; CPU iPhone OS 16_7_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
  "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
  "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/124.0.6367.88 Mobile/15E148 Safari/604.1",
  "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) FxiOS/125.0 Mobile/15E148 Safari/605.1.15",
  "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
  "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Mobile Safari/537.36",
  "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
  "Mozilla/5.0 (Android 14; Mobile; rv:125.0) Gecko/125.0 Firefox/125.0",
}

-- Referrers with weights; "" is a direct visit, "internal" a link on the site itself.
local REFERRERS = {
  { "", 33 },
  { "internal", 15 },
  { "https://www.google.com/", 22 },
  { "https://news.ycombinator.com/", 4 },
  { "https://news.ycombinator.com/item?id=40123456", 2 },
  { "https://www.facebook.com/", 4 },
  { "https://l.facebook.com/", 2 },
  { "https://www.bing.com/", 3 },
  { "https://duckduckgo.com/", 3 },
  { "https://t.co/Ab3dE5gH7j", 2 },
  { "https://www.reddit.com/r/programming/", 2 },
  { "https://www.linkedin.com/", 1 },
  { "https://github.com/", 1 },
  { "https://chatgpt.com/", 1 },
  { "https://lobste.rs/", 1 },
  { "https://some-blog.example.net/2024/05/analytics", 1 },
  { "https://mail.google.com/", 1 },
}

local LANGUAGES = { "en-US", "en-GB", "de-DE", "fr-FR", "es-ES", "ja-JP", "pt-BR", "nl-NL" }
local TIMEZONES = { "America/New_York", "Europe/London", "Europe/Berlin", "Europe/Paris",
  "Europe/Madrid", "Asia/Tokyo", "America/Sao_Paulo", "Europe/Amsterdam" }
local WIDTHS = { 390, 414, 768, 1280, 1366, 1440, 1536, 1920, 2560 }
-- First octets of publicly routed IPv4 space (no private, loopback, CGNAT or multicast).
local OCTETS = { 2, 3, 5, 8, 12, 13, 17, 18, 23, 24, 31, 34, 37, 41, 45, 46, 50, 52, 62, 66,
  68, 71, 73, 77, 78, 79, 80, 81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95, 98,
  99, 104, 108, 109, 136, 141, 145, 151, 176, 177, 178, 179, 181, 185, 186, 187, 188, 189, 190,
  193, 194, 195, 196, 197, 200, 201, 203, 212, 213, 217 }

local paths, path_cdf, path_total = {}, {}, 0
local ref_cdf, ref_total = {}, 0
local visitors = {}
local batch_bodies = {}
local batch_index = 0

-- per-thread counters, read by `done` through thread:get
statuses = {}
accepted = 0
ignored = 0
sent = 0
answered = 0

local function pick(list)
  return list[math.random(#list)]
end

local function build_paths()
  local named = { "/", "/pricing", "/features", "/blog", "/docs", "/about", "/contact",
    "/signup", "/login", "/changelog", "/careers", "/privacy", "/terms", "/docs/getting-started",
    "/docs/api", "/docs/self-hosting", "/integrations", "/customers", "/security", "/status" }
  for _, path in ipairs(named) do
    paths[#paths + 1] = path
  end
  local n = 1
  while #paths < 200 do
    if n % 3 == 0 then
      paths[#paths + 1] = string.format("/docs/section-%d/page-%d", n % 7, n)
    else
      paths[#paths + 1] = string.format("/blog/2024/post-%03d", n)
    end
    n = n + 1
  end
  -- Zipf-ish: weight 1 / rank^1.07, ranks in list order ("/" is the most visited)
  for rank = 1, #paths do
    path_total = path_total + 1 / (rank ^ 1.07)
    path_cdf[rank] = path_total
  end
end

local function sample_cdf(cdf, total)
  local u = math.random() * total
  local low, high = 1, #cdf
  while low < high do
    local mid = math.floor((low + high) / 2)
    if cdf[mid] < u then
      low = mid + 1
    else
      high = mid
    end
  end
  return low
end

local function random_path()
  return paths[sample_cdf(path_cdf, path_total)]
end

local function build_referrers()
  for i, item in ipairs(REFERRERS) do
    ref_total = ref_total + item[2]
    ref_cdf[i] = ref_total
  end
end

local function page_url()
  local url = "https://" .. cfg.host .. random_path()
  local u = math.random()
  if u < 0.04 then
    url = url .. "?utm_source=newsletter&utm_medium=email&utm_campaign=spring-launch"
  elseif u < 0.06 then
    url = url .. "?gclid=Cj0KCQjw" .. math.random(100000, 999999)
  end
  return url
end

local function referrer()
  local ref = REFERRERS[sample_cdf(ref_cdf, ref_total)][1]
  if ref == "internal" then
    return "https://" .. cfg.host .. random_path()
  end
  return ref
end

local function build_visitors()
  for i = 1, cfg.visitors do
    local ip = string.format("%d.%d.%d.%d", pick(OCTETS), math.random(0, 255),
      math.random(0, 255), math.random(1, 254))
    visitors[i] = {
      ip = ip,
      ua = pick(USER_AGENTS),
      session = string.format("s%08x%04x", math.random(0, 0x7fffffff), i),
      -- one visitor in ten is a signed-in user
      user = (math.random() < 0.1) and string.format("user-%d", i) or nil,
      lang = pick(LANGUAGES),
      tz = pick(TIMEZONES),
      width = pick(WIDTHS),
    }
  end
end

local function seed_event(visitor)
  local parts = { '{"event_type":"page_view","site":"', cfg.site, '","session_id":"', visitor.session, '"' }
  if visitor.user then
    parts[#parts + 1] = ',"user_id":"' .. visitor.user .. '"'
  end
  parts[#parts + 1] = ',"metadata":{"page_url":"' .. page_url() .. '"'
  local ref = referrer()
  if ref ~= "" then
    parts[#parts + 1] = ',"referrer_url":"' .. ref .. '"'
  end
  parts[#parts + 1] = "}}"
  return table.concat(parts)
end

local function collect_event(visitor)
  local parts = { '{"k":"pageview","s":"', cfg.site, '","u":"', page_url(), '"' }
  local ref = referrer()
  if ref ~= "" then
    parts[#parts + 1] = ',"r":"' .. ref .. '"'
  end
  parts[#parts + 1] = string.format(',"w":%d,"l":"%s","z":"%s"}', visitor.width, visitor.lang, visitor.tz)
  return table.concat(parts)
end

local function build_batches()
  for b = 1, cfg.bodies do
    local items = {}
    for i = 1, cfg.batch do
      local visitor = visitors[math.random(#visitors)]
      -- server-side senders name their users: every item gets a user id so visitors vary
      -- even though the whole batch shares one client IP and user agent
      local copy = { session = visitor.session, user = visitor.user or string.format("user-%d-%d", b, i) }
      items[i] = seed_event(copy)
    end
    batch_bodies[b] = "[" .. table.concat(items, ",") .. "]"
  end
end

function init(args)
  for _, arg in ipairs(args) do
    local key, value = arg:match("^([%w_]+)=(.*)$")
    if key then
      cfg[key] = tonumber(value) or value
    end
  end
  math.randomseed(cfg.seed)
  build_paths()
  build_referrers()
  build_visitors()
  if cfg.mode == "batch" then
    build_batches()
  end
end

function request()
  local visitor = visitors[math.random(#visitors)]
  local body, content_type
  if cfg.mode == "batch" then
    batch_index = batch_index % #batch_bodies + 1
    body = batch_bodies[batch_index]
    content_type = "application/json"
  elseif cfg.mode == "collect" then
    body = collect_event(visitor)
    content_type = "text/plain"
  else
    body = seed_event(visitor)
    content_type = "application/json"
  end
  sent = sent + 1
  return wrk.format("POST", nil, {
    ["Content-Type"] = content_type,
    ["User-Agent"] = visitor.ua,
    ["X-Forwarded-For"] = visitor.ip,
  }, body)
end

function response(status, headers, body)
  answered = answered + 1
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
  local ignored_reason = headers["x-footfall-ignored"] or headers["X-Footfall-Ignored"]
  if ignored_reason then
    ignored = ignored + 1
  elseif cfg.mode == "batch" then
    if status == 200 then
      accepted = accepted + (tonumber(body:match('"accepted":(%d+)')) or 0)
    end
  elseif cfg.mode == "collect" then
    if status == 202 then
      accepted = accepted + 1
    end
  elseif status == 200 then
    accepted = accepted + 1
  end
end

-- main state: collect the worker threads to read their counters in `done`
local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
end

function done(summary, latency, requests)
  local all_statuses, total_accepted, total_ignored, total_sent, total_answered = {}, 0, 0, 0, 0
  for _, thread in ipairs(threads) do
    for key, count in pairs(thread:get("statuses") or {}) do
      all_statuses[key] = (all_statuses[key] or 0) + count
    end
    total_accepted = total_accepted + (thread:get("accepted") or 0)
    total_ignored = total_ignored + (thread:get("ignored") or 0)
    total_sent = total_sent + (thread:get("sent") or 0)
    total_answered = total_answered + (thread:get("answered") or 0)
  end
  local status_parts = {}
  for key, count in pairs(all_statuses) do
    status_parts[#status_parts + 1] = string.format('"%s":%d', key, count)
  end
  local errors = summary.errors
  io.write(string.format(
    'BENCH_JSON {"duration_us":%d,"requests":%d,"bytes":%d,'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
      .. '"latency_us":{"min":%d,"mean":%.1f,"stdev":%.1f,"max":%d,"p50":%d,"p75":%d,"p90":%d,"p99":%d,"p999":%d},'
      .. '"statuses":{%s},"accepted":%d,"ignored":%d,"sent":%d,"answered":%d}\n',
    summary.duration, summary.requests, summary.bytes,
    errors.connect, errors.read, errors.write, errors.status, errors.timeout,
    latency.min, latency.mean, latency.stdev, latency.max,
    latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9),
    table.concat(status_parts, ","), total_accepted, total_ignored, total_sent, total_answered))
end
