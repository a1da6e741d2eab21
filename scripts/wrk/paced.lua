-- Paced single events: ingest.lua's requests at a steady rate, not a saturating load.
-- Arguments: ingest.lua's, plus delay_ms=N and optionally rate_per_s=R.
--
-- With delay_ms alone each connection waits delay_ms after every answer (wrk's delay()), so C
-- connections send C * 1000 / (delay_ms + latency) requests a second: below the aimed rate by
-- the latency itself (50 connections at 50 ms sent 874 a second at a 7 ms mean latency).
-- With rate_per_s the thread's connections take send times from one schedule spaced
-- 1000 / rate_per_s ms apart: each answered connection waits for the next free slot, so the
-- rate holds whatever the latency, as long as a connection is free (C * 1000 / rate_per_s ms
-- of latency at most); a schedule fallen further behind than delay_ms restarts from now.
local here = debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./"
dofile(here .. "ingest.lua")

local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } paced_timespec;
  int clock_gettime(int clock_id, paced_timespec *tp);
]]
local CLOCK_MONOTONIC = 1
local clock = ffi.new("paced_timespec")

local function now_ms()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, clock)
  return tonumber(clock.tv_sec) * 1000 + tonumber(clock.tv_nsec) / 1e6
end

local pause = 10
local spacing = nil -- ms between scheduled sends (rate_per_s given)
local next_slot = nil
local inner_init = init

function init(args)
  for _, arg in ipairs(args) do
    local value = arg:match("^delay_ms=(%d+)$")
    if value then
      pause = tonumber(value)
    end
    local rate = arg:match("^rate_per_s=(%d+)$")
    if rate and tonumber(rate) > 0 then
      spacing = 1000 / tonumber(rate)
    end
  end
  inner_init(args)
end

function delay()
  if spacing == nil then
    return pause
  end
  local now = now_ms()
  if next_slot == nil or next_slot < now - pause then
    next_slot = now
  end
  local slot = next_slot
  next_slot = next_slot + spacing
  if slot <= now then
    return 0
  end
  return math.floor(slot - now + 0.5)
end
