//! Shared helpers for Ledge benchmarks.
