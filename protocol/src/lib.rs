//! Ledge wire protocol.
