//go:build tools

// Package suite only names the package whose tests are run, so that `go mod tidy` keeps
// franz-go in go.mod and its checksums in go.sum; nothing here is built.
package suite

import _ "github.com/twmb/franz-go/pkg/kgo"
