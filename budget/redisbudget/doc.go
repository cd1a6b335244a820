// Package redisbudget keeps shared rate budgets in Redis: the store layer
// of a budget backend that needs no process of lionactor's own, only a
// Redis server (standalone, Sentinel or Cluster) that every member
// reaches.
//
// A [Store] does for each budget key what the budget service does: a
// request bucket and a token bucket, leases granted from them and returned,
// token adjustments, pauses relayed to every member, and the lowest limits
// of the live members applied. Each operation is one atomic Lua script
// (EVALSHA, loaded once) that takes the time from the Redis server, so that
// every member agrees on it whatever their clocks say. A budget starts
// empty; leases are partial when the buckets hold less than asked; refunds
// never fill a bucket past its burst.
//
// Redis keys, for a budget key K (a name such as budget.KeyFor makes, never
// an API key; its braces and % escaped as %7B, %7D and %25), all with the
// hash tag {K} so that Redis Cluster keeps them in one slot:
//
//	lionactor:{K}:state       hash: the limits applied, the two levels, the last refill, the end of a pause, the first member expiry
//	lionactor:{K}:members     hash: member -> its limits and when they lapse
//	lionactor:{K}:lease:ID    string: what lease ID granted, until its record expires
//	lionactor:{K}:pause       the channel on which pauses are published
//
// [ParseURL] reads the address of the server from a URL; the password in
// it never appears in errors, logs or String output.
package redisbudget
