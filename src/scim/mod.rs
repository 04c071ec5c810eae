//! The SCIM 2.0 service provider (RFC 7643/7644).
//!
//! Pure pieces: `schema` (attribute definitions), `filter` (parser and
//! evaluator), `patch` (the PATCH engine), `error`. The HTTP edge and the
//! mapping to User/Group resources build on them.

pub mod error;

pub use error::{ScimError, ScimType};
