//! The `gateway:` section's shape and validation live with the rest of the configuration,
//! [`crate::config::gateway`]; re-exported here under their former path.

pub(crate) use crate::config::gateway::*;
