// Package imodel is lionactor's model client, the "iModel": it turns model
// API requests into calls on an [Executor], usually a [runtime.Executor],
// and makes them go as fast as the provider's limits allow, never faster.
//
// A [Model] is one endpoint (OpenAI, Anthropic, an Azure OpenAI deployment,
// an OpenAI-compatible server, or any JSON HTTP endpoint) with its
// credentials, defaults, retry policy and HTTP client. Each request's API
// tokens are estimated before it is queued, charged to the executor's
// token bucket, and reconciled with the usage the response reports.
// Retries go back through the executor's limiter; a 429 pauses the whole
// shared budget until the provider's reset; the providers' rate-limit
// headers slow the executor down before the budget runs out.
//
// Several models may share one executor, and so one key's budget. A
// [Router] serves a model from several deployments (keys, endpoints,
// providers), each a Model on its own executor of a runtime.Router, with
// the same calls as a Model; a chat that falls back to a deployment of
// another provider is sent in that provider's dialect.
//
// API keys, and the values of headers whose names look secret, are never
// shown: snapshots, errors and logs carry [messages.Redacted] in their
// place.
package imodel
