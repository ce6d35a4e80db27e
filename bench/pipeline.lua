-- wrk script: every write carries DEPTH requests (the TechEmpower plaintext
-- shape). wrk counts responses, so requests/s stays a true figure.
local depth = tonumber(os.getenv("DEPTH") or "16")
local batch

init = function(args)
  local r = {}
  for i = 1, depth do
    r[i] = wrk.format(nil)
  end
  batch = table.concat(r)
end

request = function()
  return batch
end
