//! Consumer groups: membership and assignment ([`coordinator`], sans-IO), assignors
//! ([`assignor`], pure), and committed offsets ([`offsets`]).

pub mod assignor;
pub mod coordinator;
pub mod offsets;
