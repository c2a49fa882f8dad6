using System.Security.Cryptography;
using System.Text;

namespace Kars.Policy.Redis;

/// <summary>The Lua scripts of the Redis budget store (one <c>EVALSHA</c> per admission, one per settlement).</summary>
/// <remarks>
/// <para>Key layout under the prefix <c>P</c> (see <c>docs/redis.md</c>):</para>
/// <list type="bullet">
/// <item><c>P c:{budgetKey}</c> — one hash per budget key holding the counters of every window: fields
/// <c>{window}:{end}:u</c> (used tokens) and <c>{window}:{end}:h</c> (held tokens), where the window part is a letter and
/// the UTC period id (<c>H2026112614</c>, <c>D20261126</c>, <c>W2026W48</c>, <c>M202611</c>, <c>Y2026</c>) and
/// <c>{end}</c> the period's exclusive end in epoch seconds. One <c>HMGET</c> reads, and one <c>HSET</c> writes, all windows
/// of a level. The hash expires (positive relative <c>EXPIRE</c>, only ever extended) after the latest window end plus
/// a margin; when a new period starts, fields of periods that ended more than the margin ago are deleted.</item>
/// <item><c>P l:{leaseId}</c> — the lease (id chosen by the client), JSON: state, tokens, expiry (ms), per level the hash and the period fields
/// it holds tokens in, and the expiry sets it is listed in. After settlement it becomes a small tombstone so settlement is idempotent.</item>
/// <item><c>P x:{budgetKey}</c> — a sorted set of the budget key's open leases scored by lease expiry (ms); every
/// admission sweeps the expired leases of every level it touches and charges their full hold.</item>
/// </list>
/// <para>Time comes from <c>redis.call('TIME')</c> inside the script unless the caller passes an explicit instant
/// (replay and tests). Window ids and bounds are computed in Lua with integer civil-from-days arithmetic.</para>
/// <para>Numbers travel as decimal strings formatted with <c>%d</c>; Lua numbers are doubles, so counters and
/// limits are exact up to 2^53 tokens (<c>BudgetStore.MaxTokens</c>, the bound of one request or settlement) and
/// approximate above. Counters saturate at <c>long.MaxValue</c>, written as its exact decimal, instead of reaching the
/// 2^63 range where <c>%d</c> wraps to a negative value; a saturated counter never admits, and a hold that would
/// reach 2^63 is refused in every mode. Counters at or above 2^53 are returned as decimal strings for the same reason.</para>
/// <para>Lease ids are chosen by the client (random, below 2^62) so that a client that gave up on an admission can
/// release the lease it may have created. Keys the client can name are declared in KEYS; the lease keys found in an
/// expiry set and the hashes named in a lease are not (see <c>docs/redis.md</c>).</para>
/// </remarks>
internal static class RedisBudgetScripts
{
    /// <summary>Shared functions: civil calendar arithmetic, window computation, lease settlement and sweeping.</summary>
    internal const string Common = """
local function fmt(n) return string.format('%d', n) end

-- Counters saturate at long.MaxValue instead of wrapping: Lua numbers are doubles, and '%d' of a value at or above
-- 2^63 formats LLONG_MIN (a negative counter would admit everything after). LMAX is long.MaxValue rounded to a
-- double, i.e. 2^63; a counter at or above it is written as the exact decimal of long.MaxValue. Counters are exact
-- up to 2^53 (the bound of one request or settlement) and approximate above.
local LMAX = 9223372036854775807
local function cfmt(n)
  if n >= LMAX then return '9223372036854775807' end
  return string.format('%d', n)
end
-- A counter as a reply: an integer while exact (below 2^53), else the decimal string (Redis would convert a number
-- at or above 2^63 to LLONG_MIN).
local function cret(n)
  if n < 9007199254740992 then return n end
  return cfmt(n)
end

local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = math.floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

local function civil_from_days(z)
  z = z + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m
  if mp < 10 then m = mp + 3 else m = mp - 9 end
  if m <= 2 then y = y + 1 end
  return y, m, d
end

-- Returns the window id, start and end (epoch seconds, half-open) of the UTC calendar window of kind
-- code (H, D, W, M, Y) that contains the instant t (epoch seconds).
local function window(code, t)
  local days = math.floor(t / 86400)
  local y, m, d = civil_from_days(days)
  if code == 'H' then
    local s = math.floor(t / 3600) * 3600
    local hour = math.floor((t - days * 86400) / 3600)
    return string.format('%04d%02d%02d%02d', y, m, d, hour), s, s + 3600
  elseif code == 'D' then
    return string.format('%04d%02d%02d', y, m, d), days * 86400, days * 86400 + 86400
  elseif code == 'W' then
    local monday = days - (days + 3) % 7
    local thursday = monday + 3
    local wy = civil_from_days(thursday)
    local week = math.floor((thursday - days_from_civil(wy, 1, 1)) / 7) + 1
    return string.format('%04dW%02d', wy, week), monday * 86400, monday * 86400 + 7 * 86400
  elseif code == 'M' then
    local ny, nm = y, m + 1
    if nm > 12 then ny = y + 1; nm = 1 end
    return string.format('%04d%02d', y, m), days_from_civil(y, m, 1) * 86400, days_from_civil(ny, nm, 1) * 86400
  elseif code == 'Y' then
    return string.format('%04d', y), days_from_civil(y, 1, 1) * 86400, days_from_civil(y + 1, 1, 1) * 86400
  end
  error({ err = 'kars: unknown window ' .. tostring(code) })
end

-- window() memoised per code for one instant: a key and its parent share the same periods.
local function windows_at(t)
  local memo = {}
  return function(code)
    local m = memo[code]
    if m == nil then
      local id, ws, we = window(code, t)
      m = { id, ws, we }
      memo[code] = m
    end
    return m[1], m[2], m[3]
  end
end

local function clock(s_arg, us_arg)
  if s_arg ~= nil and s_arg ~= '' then
    return tonumber(s_arg), tonumber(us_arg)
  end
  local t = redis.call('TIME')
  return tonumber(t[1]), tonumber(t[2])
end

-- Field names of a window's counters in a level hash: '{code}{id}:{end}:u' (used) and '...:h' (held).
local function base(code, id, we) return code .. id .. ':' .. fmt(we) end

-- Deletes the counter fields of periods that ended at least margin seconds ago.
local function prune(ck, now_s, margin)
  local names = redis.call('HKEYS', ck)
  local dead = {}
  for i = 1, #names do
    local e = string.match(names[i], '^%a%w+:(%-?%d+):[uh]$')
    if e and tonumber(e) + margin <= now_s then dead[#dead + 1] = names[i] end
  end
  if #dead > 0 then redis.call('HDEL', ck, unpack(dead)) end
end

-- Replaces the hold of an active lease with a charge (nil = the full hold), in the periods of admission: one
-- HMGET and one HSET per level; a period whose counters are gone (expired or pruned) is skipped, never re-created.
-- Returns status, charged: 1 settled now, 2 already settled, 3 already charged on expiry, 0 unknown lease.
-- With cancel set, an unknown lease gets a settled tombstone so that an admission still in flight with that id is
-- refused when it arrives.
local function finish(P, lid, actual, state, tomb_ttl, cancel)
  local lk = P .. 'l:' .. lid
  local raw = redis.call('GET', lk)
  if not raw then
    if cancel then redis.call('SET', lk, cjson.encode({ s = 'S', c = '0' }), 'EX', fmt(tomb_ttl)) end
    return 0, 0
  end
  local L = cjson.decode(raw)
  if L.s ~= 'a' then
    if L.s == 'S' then return 2, tonumber(L.c) end
    return 3, tonumber(L.c)
  end
  local t = tonumber(L.t)
  local charge = actual
  if charge == nil then charge = t end
  for i = 1, #L.c do
    local ck = L.c[i].k
    local fb = L.c[i].f
    if #fb > 0 then
      local names = {}
      for j = 1, #fb do
        names[#names + 1] = fb[j] .. ':u'
        names[#names + 1] = fb[j] .. ':h'
      end
      local vals = redis.call('HMGET', ck, unpack(names))
      local out = {}
      for j = 1, #fb do
        local h = vals[2 * j]
        if h then
          local nh = tonumber(h) - t
          if nh < 0 then nh = 0 end
          out[#out + 1] = names[2 * j]
          out[#out + 1] = cfmt(nh)
          if charge > 0 then
            out[#out + 1] = names[2 * j - 1]
            out[#out + 1] = cfmt((tonumber(vals[2 * j - 1]) or 0) + charge)
          end
        end
      end
      if #out > 0 then redis.call('HSET', ck, unpack(out)) end
    end
  end
  for i = 1, #L.z do redis.call('ZREM', L.z[i], lid) end
  redis.call('SET', lk, cjson.encode({ s = state, c = cfmt(charge) }), 'EX', fmt(tomb_ttl))
  return 1, charge
end

-- Charges the full hold of every lease of the expiry set zk that expired at or before now_ms.
local function sweep(P, zk, now_ms, limit, tomb_ttl)
  local ids = redis.call('ZRANGEBYSCORE', zk, '-inf', fmt(now_ms), 'LIMIT', '0', fmt(limit))
  for i = 1, #ids do
    local st = finish(P, ids[i], nil, 'E', tomb_ttl, false)
    if st ~= 1 then redis.call('ZREM', zk, ids[i]) end
  end
end

if redis.replicate_commands then redis.replicate_commands() end
""";

    /// <summary>
    /// Admission. KEYS: the lease key, then per level its counter hash and its expiry set. ARGV: prefix, now seconds
    /// ('' = server TIME), now microseconds, tokens, lease duration (ms), observe (1/0), counter TTL margin (s),
    /// tombstone TTL (s), sweep limit, level count, lease id (chosen by the client), then per level: window count,
    /// then per window: code, limit ('' = counted but not limited).
    /// Returns: status (1 admitted, 0 rejected, 2 admitted in observe mode although it would be rejected, 3 the lease
    /// id is taken — by a collision or by a release that overtook this admission — and nothing was written),
    /// now seconds, now microseconds, retry-after seconds (until every blocking window has rolled over; -1 when the
    /// tokens exceed a limit outright and no rollover helps), lease expiry (ms), window count, then per level and
    /// window: used, held (including this request when admitted), start, end.
    /// </summary>
    internal const string Admit = Common + "\n" + """
local P = ARGV[1]
local lk = KEYS[1]
if redis.call('EXISTS', lk) == 1 then return { 3 } end
local now_s, now_us = clock(ARGV[2], ARGV[3])
local now_ms = now_s * 1000 + math.floor(now_us / 1000)
local tokens = tonumber(ARGV[4])
local lease_ms = tonumber(ARGV[5])
local observe = ARGV[6] == '1'
local margin = tonumber(ARGV[7])
local tomb_ttl = tonumber(ARGV[8])
local sweep_limit = tonumber(ARGV[9])
local nlev = tonumber(ARGV[10])
local lid = ARGV[11]

local idx = 12
local levels = {}
local total = 0
local win = windows_at(now_s)
for l = 1, nlev do
  local nw = tonumber(ARGV[idx])
  idx = idx + 1
  local lv = { ck = KEYS[2 * l], zk = KEYS[2 * l + 1], ws = {} }
  sweep(P, lv.zk, now_ms, sweep_limit, tomb_ttl)
  for w = 1, nw do
    local code = ARGV[idx]
    local limit = tonumber(ARGV[idx + 1])
    idx = idx + 2
    local id, ws, we = win(code)
    lv.ws[w] = { fb = base(code, id, we), limit = limit, ws = ws, we = we }
  end
  total = total + nw
  levels[l] = lv
end

local ok = true
local never = false
local overflow = false
local retry = 0
for l = 1, nlev do
  local lv = levels[l]
  if #lv.ws > 0 then
    local names = {}
    for w = 1, #lv.ws do
      names[#names + 1] = lv.ws[w].fb .. ':u'
      names[#names + 1] = lv.ws[w].fb .. ':h'
    end
    local vals = redis.call('HMGET', lv.ck, unpack(names))
    for w = 1, #lv.ws do
      local x = lv.ws[w]
      x.fresh = not vals[2 * w]
      x.u = tonumber(vals[2 * w - 1]) or 0
      x.h = tonumber(vals[2 * w]) or 0
      -- A hold that could not be represented is refused in every mode.
      if x.h + tokens >= LMAX then overflow = true end
      if x.limit ~= nil then
        local load = x.u + x.h
        -- A saturated load never fits; a request above the whole limit never fits (no retry helps); a limit of 0
        -- admits nothing, not even 0 tokens.
        if load >= LMAX or x.limit == 0 or tokens > x.limit or load + tokens > x.limit then
          ok = false
          if tokens > x.limit or x.limit == 0 then never = true end
          if x.we - now_s > retry then retry = x.we - now_s end
        end
      end
    end
  end
end
if never or overflow then retry = -1 end

local status = 0
if overflow then status = 0 elseif ok then status = 1 elseif observe then status = 2 end

local exp_ms = 0
if status ~= 0 then
  exp_ms = now_ms + lease_ms
  local keep = margin + math.ceil(lease_ms / 1000)
  for l = 1, nlev do
    for w = 1, #levels[l].ws do
      local ttl = levels[l].ws[w].we - now_s + margin
      if ttl > keep then keep = ttl end
    end
  end
  local held = {}
  local zsets = {}
  for l = 1, nlev do
    local lv = levels[l]
    zsets[l] = lv.zk
    local fbs = {}
    if #lv.ws > 0 then
      local out = {}
      local fresh = false
      for w = 1, #lv.ws do
        local x = lv.ws[w]
        x.h = x.h + tokens
        out[#out + 1] = x.fb .. ':h'
        out[#out + 1] = cfmt(x.h)
        if x.fresh then
          out[#out + 1] = x.fb .. ':u'
          out[#out + 1] = '0'
          fresh = true
        end
        fbs[w] = x.fb
      end
      -- A new period started for some window: drop the counters of periods that ended margin ago.
      if fresh then prune(lv.ck, now_s, margin) end
      redis.call('HSET', lv.ck, unpack(out))
      if redis.call('TTL', lv.ck) < keep then redis.call('EXPIRE', lv.ck, fmt(keep)) end
    end
    held[l] = { k = lv.ck, f = fbs }
  end
  redis.call('SET', lk, cjson.encode({ s = 'a', t = fmt(tokens), e = fmt(exp_ms), c = held, z = zsets }), 'EX', fmt(keep))
  for l = 1, nlev do
    redis.call('ZADD', zsets[l], fmt(exp_ms), lid)
    if redis.call('TTL', zsets[l]) < keep then redis.call('EXPIRE', zsets[l], fmt(keep)) end
  end
end

local out = { status, now_s, now_us, retry, exp_ms, total }
for l = 1, nlev do
  for w = 1, #levels[l].ws do
    local x = levels[l].ws[w]
    out[#out + 1] = cret(x.u)
    out[#out + 1] = cret(x.h)
    out[#out + 1] = x.ws
    out[#out + 1] = x.we
  end
end
return out
""";

    /// <summary>
    /// Settlement. KEYS: the lease key. ARGV: prefix, now seconds ('' = server TIME), now microseconds, lease id,
    /// actual tokens ('' = charge the full hold), tombstone TTL (s), release (1/0).
    /// Returns: status (1 settled now, 2 already settled, 3 expired and charged its hold, 0 unknown lease), charged.
    /// A lease settled at or after its expiry is charged its full hold (status 3). A release (actual 0, even after
    /// the lease's expiry as long as no sweep charged it first; sent by the
    /// client when it gave up on an admission) also leaves a settled tombstone for an unknown lease, so the admission,
    /// if it is still in flight, is refused when it arrives.
    /// </summary>
    internal const string Settle = Common + "\n" + """
local P = ARGV[1]
local now_s, now_us = clock(ARGV[2], ARGV[3])
local now_ms = now_s * 1000 + math.floor(now_us / 1000)
local lid = ARGV[4]
local actual = nil
if ARGV[5] ~= '' then actual = tonumber(ARGV[5]) end
local tomb_ttl = tonumber(ARGV[6])
local release = ARGV[7] == '1'

local raw = redis.call('GET', KEYS[1])
if raw then
  local L = cjson.decode(raw)
  -- A release is never charged: its caller never received the lease, so nothing ran under it.
  if not release and L.s == 'a' and now_ms >= tonumber(L.e) then
    local _, c = finish(P, lid, nil, 'E', tomb_ttl, false)
    return { 3, c }
  end
end
local st, c = finish(P, lid, actual, 'S', tomb_ttl, release)
return { st, c }
""";

    /// <summary>
    /// Status. KEYS: per level its counter hash and its expiry set. ARGV: prefix, now seconds ('' = server TIME),
    /// now microseconds, tombstone TTL (s), sweep limit, level count, then per level: window count, then the window
    /// codes.
    /// Returns: now seconds, now microseconds, then per level and window: used, held, start, end.
    /// Expired leases of every level are charged first.
    /// </summary>
    internal const string Status = Common + "\n" + """
local P = ARGV[1]
local now_s, now_us = clock(ARGV[2], ARGV[3])
local now_ms = now_s * 1000 + math.floor(now_us / 1000)
local tomb_ttl = tonumber(ARGV[4])
local sweep_limit = tonumber(ARGV[5])
local nlev = tonumber(ARGV[6])
local idx = 7
local out = { now_s, now_us }
local win = windows_at(now_s)
for l = 1, nlev do
  local nw = tonumber(ARGV[idx])
  idx = idx + 1
  sweep(P, KEYS[2 * l], now_ms, sweep_limit, tomb_ttl)
  if nw > 0 then
    local names = {}
    local bounds = {}
    for w = 1, nw do
      local code = ARGV[idx]
      idx = idx + 1
      local id, ws, we = win(code)
      local fb = base(code, id, we)
      names[#names + 1] = fb .. ':u'
      names[#names + 1] = fb .. ':h'
      bounds[w] = { ws, we }
    end
    local vals = redis.call('HMGET', KEYS[2 * l - 1], unpack(names))
    for w = 1, nw do
      out[#out + 1] = cret(tonumber(vals[2 * w - 1]) or 0)
      out[#out + 1] = cret(tonumber(vals[2 * w]) or 0)
      out[#out + 1] = bounds[w][1]
      out[#out + 1] = bounds[w][2]
    end
  end
end
return out
""";

    /// <summary>Test hook: ARGV is a list of epoch seconds; returns, per instant and per window code H, D, W, M, Y,
    /// the id, start and end. Not used by the store.</summary>
    internal const string WindowProbe = Common + "\n" + """
local out = {}
for i = 1, #ARGV do
  local t = tonumber(ARGV[i])
  for _, code in ipairs({ 'H', 'D', 'W', 'M', 'Y' }) do
    local id, ws, we = window(code, t)
    out[#out + 1] = id
    out[#out + 1] = fmt(ws)
    out[#out + 1] = fmt(we)
  end
end
return out
""";

    /// <summary>The SHA-1 of <see cref="Admit"/>, as <c>EVALSHA</c> expects.</summary>
    internal static readonly byte[] AdmitSha = Sha(Admit);

    /// <summary>The SHA-1 of <see cref="Settle"/>.</summary>
    internal static readonly byte[] SettleSha = Sha(Settle);

    /// <summary>The SHA-1 of <see cref="Status"/>.</summary>
    internal static readonly byte[] StatusSha = Sha(Status);

    // Redis names scripts by SHA-1; this is an identifier, not a security use.
#pragma warning disable CA5350
    private static byte[] Sha(string script) => SHA1.HashData(Encoding.UTF8.GetBytes(script));
#pragma warning restore CA5350
}
