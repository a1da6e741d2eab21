-- Paced single events: ingest.lua's requests, each connection waiting delay_ms between
-- requests (wrk's delay()), so C connections send about C * 1000 / delay_ms requests a
-- second whatever the server does: a steady tracker load, not a saturating one.
-- Arguments: ingest.lua's, plus delay_ms=N.
local here = debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./"
dofile(here .. "ingest.lua")

local pause = 10
local inner_init = init

function init(args)
  for _, arg in ipairs(args) do
    local value = arg:match("^delay_ms=(%d+)$")
    if value then
      pause = tonumber(value)
    end
  end
  inner_init(args)
end

function delay()
  return pause
end
