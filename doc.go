// Package lionactor is an embeddable actor-model runtime that executes model
// API calls (OpenAI-compatible chat and embeddings, Anthropic messages, any
// JSON HTTP endpoint) as fast as a request-rate limit, a token-rate limit and
// a concurrency cap allow, with every request observable as immutable
// snapshots and none ever lost.
//
// The module's packages:
//
//   - runtime: the executor (start it, or spawn it in your actor system)
//   - messages: snapshots, calls, errors and the actor messages
//   - actors: the supervisor, queue, limiter and caller actors
//   - imodel: the model client over HTTP
//   - simulator: a local OpenAI- and Anthropic-compatible server
//
// This root package holds no code; its tests exercise the whole actor tree
// end to end.
package lionactor
