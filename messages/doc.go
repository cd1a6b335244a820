// Package messages defines the values that flow through a lionactor executor:
// the immutable [Event] snapshots that describe one request's life, the
// [Call] that performs the work, the typed errors, and the plain actor
// messages ([Submit], [Cancel], [StatsQuery] and their replies) with which
// any actor can drive an executor.
//
// Everything here is a value: once published, an [Event] never changes.
// Its scalar fields are copied with it, and the parts that are maps or
// slices are reachable only through accessors that return copies.
package messages
