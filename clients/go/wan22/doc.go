// Package wan22 holds the wire types of wan22-serve for Go producers and consumers: request
// fields for XADD to the requests stream (flat or `payload` form), lifecycle events decoded into
// typed structs, the task hash, and every key and consumer-group name. It has no dependencies;
// pass its maps and strings to any Redis client.
//
// wan22_gen.go is generated from docs/schema/ and services/keys.py by `wan22 schema --go`; a test
// fails when it is stale. This file and request.go are written by hand.
package wan22
