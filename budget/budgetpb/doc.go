// Package budgetpb holds the protobuf messages that members of a shared rate
// budget and the budget service exchange over protoactor-go's remote layer.
//
// The Go code is generated from budget.proto; edit the .proto and run
// go generate (protoc and the protoc-gen-go tool pinned in go.mod).
package budgetpb

//go:generate protoc --plugin=protoc-gen-go=./protoc-gen-go.sh --go_out=. --go_opt=paths=source_relative budget.proto
