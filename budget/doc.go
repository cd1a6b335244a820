// Package budget shares one rate budget among executors in several
// processes, over protoactor-go's remote layer.
//
// An API key's limits are global: executors in different processes that
// each enforce the whole limit together exceed it. A [Service] holds one
// budget per key (a request bucket and a token bucket on
// golang.org/x/time/rate) and grants leases: blocks of requests and API
// tokens that a member may spend for the lease TTL. A member is an executor
// configured with a [MemberConfig] as its runtime.Config.SharedBudget: its
// limiter then takes every permit from leases, which a broker actor beside
// it obtains, so that a round trip to the service is paid per lease, not
// per request.
//
// Keys are named by [KeyFor]: the endpoint and a hash of the API key. The
// key itself never crosses the network. Messages are the protobuf types of
// package budgetpb, the only kind remote carries.
//
// Failures: a member whose service stays silent for its ReplyTimeout logs
// it and falls back to its share of the limits (limits ÷ ExpectedMembers),
// starting empty; it rejoins when the service answers again. Members that
// are joined speak at least every third of their ReplyTimeout, so the
// service holds back the share of one silent for longer, or that says it
// keeps to its local share: a partial loss of the service keeps the key
// within its limit. A member that dies loses only its unexpired leases; one
// that stops gracefully gives them back at once. A pause reported by one
// member (a 429, or rate-limit headers saying the budget is nearly spent)
// is relayed by the service to every member of the key.
//
// Security: the service admits only its members, by mutual TLS
// ([TLSFiles]), by a shared [Secret] of which every message carries proof,
// or both. It refuses the rest, logging and counting them
// ([ServiceStats].RefusedConnections, RefusedMessages); a refused member
// says so and keeps to its local share. Without TLS, [Listen] serves on
// loopback only unless ServiceConfig.Insecure is set.
//
// protoactor's remote layer starts gRPC servers and writes gRPC's global
// logger when it starts; run one remote per process (a member started with
// runtime.Start gets one of its own, see MemberConfig.ListenAddr).
package budget
