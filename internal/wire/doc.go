// Package wire holds the JSON wire types of the OpenAI and Anthropic APIs,
// their rate-limit and retry-after headers, and a server-sent-events decoder.
//
// The package knows only the shape of bytes on the wire: it has no HTTP
// client and no runtime, so that the client that calls the providers and
// any server that imitates them agree on one definition of the format.
//
// Request types keep fields they do not model in an Extra map, so that a
// request passed through this package reaches the provider unchanged even
// when the provider has added parameters since these types were written.
package wire
