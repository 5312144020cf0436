// Pins the franz-go whose client test suite (github.com/twmb/franz-go/pkg/kgo's tests) runs
// against Ledge's Kafka listener (tests/kafka/franz_go_suite.py, docs/KAFKA-COMPAT.md).
// go.sum pins its checksums; .ci/run downloads it from the Go module proxy and builds the
// test binary. To move to a newer franz-go: change the version here, `go mod tidy`, run the
// full suite and update franz-go-allow.txt.
module ledge.test/franz-go-suite

go 1.26.0

require github.com/twmb/franz-go v1.22.3

require (
	github.com/klauspost/compress v1.20.3 // indirect
	github.com/pierrec/lz4/v4 v4.1.33 // indirect
	github.com/twmb/franz-go/pkg/kmsg v1.15.1 // indirect
)
