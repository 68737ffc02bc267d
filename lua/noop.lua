--[[
  noop: the cost floor of a script call, the baseline benchmarks compare to.

  Input:  KEYS[1] tenant prefix; ARGV[1] MAXLEN, ARGV[2] retention (unused)
  Output: 1
  Events: none
]]
return 1
