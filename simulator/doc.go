// Package simulator is a built-in simulator of the OpenAI, Anthropic and
// Azure OpenAI APIs that enforces its own rate limits per API key and
// answers as the real services do: the same paths, JSON bodies, server-sent-event streams,
// error bodies, status codes and rate-limit headers. It lets tests,
// benchmarks and demonstrations drive a client against realistic limits
// and failures without a network or an account.
//
// # Endpoints
//
// POST /v1/chat/completions and POST /v1/embeddings speak OpenAI's API,
// with "Authorization: Bearer KEY"; POST /v1/messages speaks Anthropic's,
// with "x-api-key: KEY" (or, as Anthropic's SDKs send it, "Authorization:
// Bearer KEY") and the required anthropic-version header.
// POST /openai/deployments/{deployment}/chat/completions and .../embeddings
// speak Azure OpenAI's: OpenAI's bodies, with "api-key: KEY", a required
// api-version query parameter (404 without one, as Azure answers), the
// deployment's name as the model when the body names none, limits per
// deployment, and only the x-ratelimit-remaining-* headers. Bodies are
// decoded and encoded with the wire types imodel uses. Replies are
// lorem-ipsum words, one token each, CompletionTokens long (or
// max_tokens, if smaller), chosen by a random source seeded from
// Config.Seed and the request's model and prompt, so the same request gets
// the same reply. Usage is counted with package imodel/tokens.
//
// # Batch APIs
//
// The providers' offline batch APIs are served too, in their formats:
// OpenAI's Files and Batch APIs (POST and GET /v1/files, GET and DELETE
// /v1/files/{id}, GET /v1/files/{id}/content, POST and GET /v1/batches,
// GET /v1/batches/{id}, POST /v1/batches/{id}/cancel) and Anthropic's
// Message Batches (POST and GET /v1/messages/batches, GET and DELETE
// /v1/messages/batches/{id}, GET /v1/messages/batches/{id}/results, POST
// /v1/messages/batches/{id}/cancel). Each request inside a batch gets what
// its body gets online (the same reply, usage and error body, under the
// same keys) without being charged to the rate limits, delayed or
// faulted; results come in an order other than the requests', as the
// providers warn. OpenAI's batches accept /v1/chat/completions and
// /v1/embeddings and validate their input file as OpenAI documents
// (50,000 requests, 200 MB, unique custom_ids, one endpoint and one model);
// Anthropic's take up to 100,000 requests.
//
// A batch takes Config.BatchDelay from its creation to its end, measured
// on a clock of its own that Server.AdvanceBatches moves forward, so that
// a test need not wait. Its progress is computed from that clock when it
// is asked for: no goroutine or timer runs for it. Config.BatchFaults
// makes a share of requests end with a server error or expired, or whole
// OpenAI batches fail validation; Config.BatchEnqueuedTokens is OpenAI's
// limit on the tokens a key has enqueued. Stats.Batches counts uploads,
// creations and cancellations, so that a test can show that a client
// resumes its batches rather than creating them again. The store is
// bounded by MaxBatchBytes and MaxBatchObjects.
//
// # Rate limits
//
// Each API key (on Azure, each key's deployment) has a request bucket and
// a token bucket, each refilling continuously at its per-minute limit / 60
// per second. A bucket holds the per-minute limit, as the providers' buckets do, unless
// Config.RequestBurst or Config.TokenBurst makes it smaller, so that a test
// can demand steady pacing instead of a minute's worth at once. A request
// costs 1 request and, as OpenAI estimates it at admission, its prompt
// tokens plus n × max_tokens (tokens.DefaultMaxTokens when unset); an
// embeddings request costs its input tokens. A request that does not fit is
// refused with 429 and costs nothing. Every response to an accepted key
// carries the provider's headers: x-ratelimit-{limit,remaining,reset}-
// {requests,tokens} for OpenAI, with the reset as a duration until the
// bucket is full ("1s", "6m0s", "12ms"), and anthropic-ratelimit-
// {requests,tokens}-{limit,remaining,reset} for Anthropic, with the reset
// as an RFC 3339 time. The limit is always the per-minute limit and the
// remaining count the bucket's level. A 429 carries retry-after (seconds)
// and, for OpenAI, retry-after-ms.
//
// # Faults
//
// Config.Faults makes a share of requests fail at random: 500, 503, 529,
// injected 429s, connection resets, malformed JSON, truncated bodies and
// streams, and slow responses. Faults other than 429 happen after
// admission, so the request is charged, as a real failure after admission
// would be.
//
// # Test hooks
//
// Request headers steer single requests, so that a test can produce an
// outcome without depending on the seed:
//
//	X-Sim-Fault: 500|503|529|429|reset|malformed|truncate|slow|quota
//	X-Sim-Fault-Times: N   only the first N attempts with the same
//	                       X-Sim-Request-Id meet the fault
//	X-Sim-Request-Id: ID   names the logical request across retries
//	X-Sim-Latency: 20ms    the latency of this request
//	X-Sim-Should-Retry: true|false
//	                       an error response carries x-should-retry
//
// For example, a request sent with "X-Sim-Fault: 503", "X-Sim-Fault-Times:
// 2" and "X-Sim-Request-Id: r1" fails twice and succeeds on the third
// attempt, which shows that a client retries. An invalid hook value is
// answered 400.
//
// # Observation
//
// Server.Stats counts responses by status, rate-limit refusals, admitted
// requests and tokens, per-key counts and the largest number of requests
// in flight at once. Server.Arrivals and MaxBurst tell how many requests
// arrived within any window, to check a client's pacing.
package simulator
