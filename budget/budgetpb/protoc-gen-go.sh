#!/bin/sh
# protoc plugin wrapper: runs the protoc-gen-go pinned as a tool in go.mod.
exec go tool protoc-gen-go "$@"
