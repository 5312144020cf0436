//! Ledge node.
