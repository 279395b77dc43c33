//! Proving who the user is: the local-users login form (embedded identity source), logout,
//! and the small HTML pages they render. (The OIDC relying party lives in `oidc/`.)

pub mod local;
pub mod pages;
