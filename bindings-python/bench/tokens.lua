-- wrk script: every request presents its own pre-minted proof token (one per line in the file
-- named by VLX_TOKENS); thread i takes tokens i+1, i+1+T, i+1+2T, … so no token is sent twice.
local tokens = {}
local counter = 0
local nthreads = tonumber(os.getenv("WRK_THREADS") or "1")
local created = 0

function setup(thread)
  thread:set("tid", created)
  created = created + 1
end

function init(args)
  for line in io.lines(os.getenv("VLX_TOKENS")) do
    tokens[#tokens + 1] = line
  end
  counter = tid + 1 - nthreads
end

function request()
  counter = counter + nthreads
  local t = tokens[counter] or "exhausted"
  return wrk.format("GET", "/hello", { ["Vlexivo-Proof"] = t })
end
