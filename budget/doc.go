// Package budget shares one rate budget among executors in several
// processes: through a budget service of its own over protoactor-go's
// remote layer, or through Redis.
//
// An API key's limits are global: executors in different processes that
// each enforce the whole limit together exceed it. A shared budget holds
// one request bucket and one token bucket per key and grants leases:
// blocks of requests and API tokens that a member may spend for the lease
// TTL. A member is an executor configured with a [MemberConfig] as its
// runtime.Config.SharedBudget: its limiter then takes every permit from
// leases, which a broker actor beside it obtains, so that a round trip to
// the budget is paid per lease, not per request.
//
// Where the budget is kept is MemberConfig.Address:
//
//   - host:port: a [Service], a process of lionactor's ([Listen], or
//     `lionactor budget serve`). It grants leases in arrival order across
//     members and relays pauses to them; it answers by connecting back to
//     each member, so a member listens (MemberConfig.ListenAddr).
//   - redis://, rediss://, unix:// (and Sentinel's master_name=): a Redis
//     server the members share (package redisbudget holds the scripts).
//     Nothing of lionactor's runs beside the members, and a member listens
//     on nothing. Members are not served in order: one that is told to
//     wait asks again when the budget will hold its lease, with a little
//     jitter so that members do not ask in lockstep. Pauses reach the
//     others through Redis's pub/sub.
//
// Keys are named by [KeyFor]: the endpoint and a hash of the API key. The
// key itself never leaves the process.
//
// # The broker and its backends
//
// One broker serves both kinds of budget. It holds the policy, written
// once: it asks for what the limiter waits for, passes grants on and gives
// back the late ones, shares pauses of at least 10 ms, and keeps the
// member's standing (reported to the executor as actors.BrokerState). It
// has two behaviours, swapped with protoactor's Become: joined, while the
// budget answers; and on the local share, after the budget stayed silent
// for ReplyTimeout, failed or refused the member. On the local share it
// grants leases from a bucket of its own holding the limits ÷
// ExpectedMembers, starting empty; refunds, adjustments and pauses apply to
// that bucket; and it probes every RejoinInterval, rejoining when the
// budget answers.
//
// A backend is the mechanism: how to ask for a lease, give one back,
// adjust tokens, pause, probe and leave, for one kind of budget. The
// broker calls it on its own goroutine, where it never blocks; outcomes
// come back to the broker as messages (a lease answered, the budget up or
// down, another member's pause, the leases given back at a graceful stop).
// The service's backend sends protobuf messages (package budgetpb) and
// tells a silent service by its own timers; the Redis backend runs each
// call on a goroutine with ReplyTimeout as its deadline, so that an error
// or a timeout is the sign the budget is down.
//
// # Failures
//
// A member that cannot use its budget logs it and falls back to its share,
// and rejoins when the budget answers again. A member that dies loses only
// its unexpired leases (the service forgets them, Redis lets their records
// expire); one that stops gracefully gives them back at once. A pause
// reported by one member (a 429, or rate-limit headers saying the budget
// is nearly spent) reaches every member of the key.
//
// Members of a service that are joined speak at least every third of their
// ReplyTimeout, so the service holds back the share of one silent for
// longer, or that says it keeps to its local share: a partial loss of the
// service keeps the key within its limit. Redis has no such holding back:
// a member cut off from Redis while the others are not spends its share
// beside them until it rejoins.
//
// # Security
//
// The service admits only its members, by mutual TLS ([TLSFiles]), by a
// shared [Secret] of which every message carries proof, or both. It refuses
// the rest, logging and counting them ([ServiceStats].RefusedConnections,
// RefusedMessages); a refused member says so and keeps to its local share.
// Without TLS, [Listen] serves on loopback only unless ServiceConfig.Insecure
// is set. A budget on Redis is secured as Redis is: an ACL user and
// password in the URL, TLS with rediss://; a member whose password Redis
// refuses says so and keeps to its local share. Passwords and the hash that
// names a key appear in no log, error or Stats.
//
// protoactor's remote layer starts gRPC servers and writes gRPC's global
// logger when it starts; run one remote per process (a member of a service
// started with runtime.Start gets one of its own, see
// MemberConfig.ListenAddr).
package budget
