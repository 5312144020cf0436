//! Ledge client SDK.
