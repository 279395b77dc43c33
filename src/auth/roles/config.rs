//! The roles' configuration (`auth.authorization.bindings` / `roles`) lives with the rest of
//! the configuration, [`crate::config::roles`]; re-exported here under its former path.

pub use crate::config::roles::*;
