//! Proving who the user is: the local users (embedded identity source) and their sign-in
//! decision. (The OIDC relying party lives in `oidc/`; the HTML pages and handlers in
//! `transport/http/`.)

pub(crate) mod local;
