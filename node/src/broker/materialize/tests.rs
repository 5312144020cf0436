//! Tests of the materialization plan.
