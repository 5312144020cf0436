//! Security building blocks of issue 15: pure parts (no IO) the listeners use once wired.

pub mod access;
pub mod acl;
pub mod audit;
pub mod credentials;
pub mod identity;
pub mod principal;
pub mod quota;
pub mod records;
pub mod sasl;
pub mod scram;
pub mod store;
