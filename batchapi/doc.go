// Package batchapi runs many model requests through a provider's batch API,
// OpenAI's Batch API (/v1/files and /v1/batches) or Anthropic's Message
// Batches (/v1/messages/batches), which answer within 24 hours at about
// half the online price, for a program that submits many requests and can
// wait.
//
//	outcomes, stats, err := batchapi.Do(ctx, model, batchapi.Config{Journal: "run.batches.jsonl"}, requests)
//
// Each request ends as a model call does, in a terminal messages.Event with
// the same statuses and error kinds: the provider's answer is read by the
// model (imodel.Model.ReadResponse) as a call reads a response. A request
// whose batch ended without its answer (the window expired, the batch
// failed, or an error a call would retry) goes into a new batch, up to
// Config.MaxAttempts batches, or online through the model's executor with
// Config.FallbackOnline.
//
// # Actors
//
// A run is an actor tree under one supervisor, in an actor system of its
// own. The supervisor owns the requests and the batches; its children are
//
//   - the submitter, which splits the requests into batches within the
//     provider's limits and Config's (requests, bytes, one model per batch,
//     and the enqueued-token limit: a batch waits until the batches not yet
//     ended leave it room), uploads and creates them one at a time, and
//     holds back the reading of the input while a built batch waits;
//   - a poller per batch, which asks how the batch stands every Config.Poll
//     on its timer and, once it has ended, reads its results.
//
// No actor blocks: every HTTP request, and every write of the journal, runs
// on a goroutine that reports back by message, and every wait is a timer
// (internal/selftimer). The requests are read, built and encoded on a
// goroutine of their own, which hands them to the supervisor in chunks
// (addItems, acknowledged by the submitter when it has room); the outcomes
// reach the goroutine that called Run through an outbox, in order.
//
// Messages: addItems and inputEnded (reader → supervisor); place, buildAll,
// released and stopCreating (supervisor → submitter); created, refused and
// quiet (submitter → supervisor); batchEnded and cancelled (poller →
// supervisor); cancelBatch (supervisor → poller); interruptRun and wrapUp
// (Run → supervisor).
//
// # Resuming
//
// With a Config.Journal, the run writes a record before each batch is
// created (with its requests' keys), another once it is, and another once
// every request in it has its outcome delivered; each is synced to disk
// before the run goes on. A run started with the same journal polls the
// batches created and not settled instead of creating them again, and
// looks up at the provider a batch whose create was interrupted before its
// answer was recorded. An interrupted run leaves its batches running (or
// cancels them with Config.CancelRemote); a later run collects them.
package batchapi
