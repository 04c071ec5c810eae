//! The SCIM 2.0 service provider (RFC 7643/7644).
//!
//! Pure pieces: `schema` (attribute definitions), `filter` (parser and
//! evaluator), `patch` (the PATCH engine), `error`. The HTTP edge and the
//! mapping to User/Group resources build on them.

pub mod attr_path;
pub mod discovery;
pub mod error;
pub mod filter;
#[cfg(test)]
mod filter_props;
pub mod http;
pub mod list;
pub mod patch;
#[cfg(test)]
mod patch_props;

pub mod ratelimit;
pub mod resource;
pub mod schema;

pub use error::{ScimError, ScimType};
