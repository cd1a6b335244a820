// Package batch runs a JSONL file of model requests through an executor at
// the provider's limits, writing one JSONL result per request as each ends.
// It is the engine of the lionactor batch command: resumable (requests with
// a final result in the output are skipped), interruptible (in-flight calls
// finish, the rest remain for a rerun), and observable (progress, summary,
// Prometheus metrics).
//
// A run may go over several deployments (keys, endpoints, providers)
// through a router, each line's model selecting its group
// (Config.Deployments).
package batch
