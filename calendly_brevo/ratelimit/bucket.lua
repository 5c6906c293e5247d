-- Shared reservation bucket for one Brevo limit family; bucket.py explains the algorithm and
-- holds the same algorithm in Python (next_slot), which the tests compare with this script.
--
-- KEYS[1]  list: the last `burst` virtual slot times, oldest first
-- KEYS[2]  hash: last = the last real slot, paused = no grant before this time
-- ARGV[1]  "reserve" | "pause" | "state"
-- ARGV[2]  now, or "" for the server's TIME (tests pass a clock)
-- reserve: ARGV[3] burst, ARGV[4] window, ARGV[5] spacing, ARGV[6] max_wait,
--          ARGV[7] keep (>= 0: only a slot free now, and only while more than keep tokens are
--          free: background work's spare capacity; -1 or absent: an ordinary reservation)
--          -> {1, wait} granted and recorded, or {0, wait} refused and nothing recorded
-- reserve_many: ARGV[3..6] as reserve, ARGV[7] count: up to count ordinary reservations, one
--          after another, exactly as count reserve calls would make them, stopping at the
--          first refused -> {wait, wait, ...} of those granted (possibly none)
-- pause:   ARGV[3] seconds -> paused-until (a pause is never shortened)
-- state:   -> {now, paused, last, virtual slot, virtual slot, ...}
--
-- Every time is an integer number of microseconds (since the epoch of the server clock), below
-- 2^53 so that Lua's doubles hold it exactly; replies are integers, no float crosses the wire.

if redis.replicate_commands then
  redis.replicate_commands()  -- Redis < 5: allow writes after TIME
end

local now
if ARGV[2] ~= "" then
  now = tonumber(ARGV[2])
else
  local t = redis.call("TIME")
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local function int(x)
  return string.format("%.0f", x)
end

local function keep(horizon)  -- expire both keys once nothing in them can matter any more
  local ms = math.ceil((horizon - now) / 1000) + 60000
  redis.call("PEXPIRE", KEYS[1], ms)
  redis.call("PEXPIRE", KEYS[2], ms)
end

local meta = redis.call("HMGET", KEYS[2], "last", "paused")
local last = tonumber(meta[1] or "0")
local paused = tonumber(meta[2] or "0")
local mode = ARGV[1]

if mode == "state" then
  local reply = {now, paused, last}
  for _, v in ipairs(redis.call("LRANGE", KEYS[1], 0, -1)) do
    reply[#reply + 1] = tonumber(v)
  end
  return reply
end

if mode == "pause" then
  local upto = now + tonumber(ARGV[3])
  if upto > paused then
    paused = upto
    redis.call("HSET", KEYS[2], "paused", int(paused))
    keep(math.max(paused, last))
  end
  return paused
end

-- reserve, reserve_many
local burst = tonumber(ARGV[3])
local window = tonumber(ARGV[4])
local spacing = tonumber(ARGV[5])
local max_wait = tonumber(ARGV[6])

-- One reservation: {1, wait} granted and recorded, or {0, wait} refused and nothing recorded.
local function reserve(reserved)
  local slot = now
  if redis.call("LLEN", KEYS[1]) >= burst then
    slot = math.max(slot, tonumber(redis.call("LINDEX", KEYS[1], -burst)) + window)
  end
  slot = math.max(slot, paused)
  if slot > now or last > now then
    slot = math.max(slot, last + spacing)
  end

  local wait = slot - now
  if wait > max_wait then
    return {0, wait}
  end

  if reserved >= 0 then  -- free_tokens in bucket.py
    if slot > now then
      return {0, wait}
    end
    local virtual_slots = redis.call("LRANGE", KEYS[1], 0, -1)
    local free = burst - #virtual_slots
    for _, v in ipairs(virtual_slots) do
      if tonumber(v) + window <= now then
        free = free + 1
      end
    end
    if free <= reserved then
      return {0, wait}
    end
  end

  local newest = redis.call("LINDEX", KEYS[1], -1)
  local virtual = slot
  if newest then
    virtual = math.max(slot, tonumber(newest) + spacing)
  end
  redis.call("RPUSH", KEYS[1], int(virtual))
  redis.call("LTRIM", KEYS[1], -burst, -1)
  redis.call("HSET", KEYS[2], "last", int(slot))
  last = slot
  keep(math.max(virtual + window, paused))
  return {1, wait}
end

if mode == "reserve_many" then
  local waits = {}
  for _ = 1, tonumber(ARGV[7]) do
    local reply = reserve(-1)
    if reply[1] == 0 then
      break
    end
    waits[#waits + 1] = reply[2]
  end
  return waits
end

return reserve(tonumber(ARGV[7] or "-1"))  -- "keep" in bucket.py
