// Package sdktest drives the simulator, and lionactor's model client, with
// the providers' official Go SDKs (github.com/openai/openai-go and
// github.com/anthropics/anthropic-sdk-go): what every other test trusts the
// simulator for must hold for the clients the providers ship, and where the
// SDKs define a behaviour (x-should-retry) imodel must agree with them.
//
// It is a module of its own so that the SDKs, and what they require, are
// dependencies of these tests only: they stay out of the module graph of
// programs that use lionactor. In one module, anthropic-sdk-go would raise
// go.opentelemetry.io/otel to v1.33 for everyone, and protoactor-go's
// otel/sdk/metric v1.21 does not build against it; here sdk/metric is
// raised with it. Run its tests from this directory (CI does):
//
//	go test -race -count=1 ./...
package sdktest
