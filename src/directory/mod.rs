//! The directory: what SCIM, SAML, the controllers (and the gate) share
//! about a policy's Users and Groups, below all of them.
//!
//! - `store`: one policy's Users, Groups and member slices in the API, with
//!   the field manager of their writer, and userName `claims`;
//! - `caches`: the process's watch-fed caches, one watch per kind and
//!   watched namespace, read by the HTTP side and by the controllers;
//! - `membership`: the index of member slices and user ids they feed, and
//!   `group_names`: its Groups (display names, members declared in git);
//!   `slices`: which member slices belong to which Group;
//! - `policies`: the watch-fed policy cache;
//! - `tokens`: SCIM bearer tokens, from the policy's Secret;
//! - `consumed`: SAML assertion and request ids already used;
//! - `audit` and `events`: the Events recorded for what a writer changed;
//! - `writers`: who may write what under which mode, and their field managers;
//! - `intern`: one shared copy of strings the caches repeat (policy names).
//!
//! Its errors say what went wrong, never how a protocol answers it: the SCIM
//! layer maps them to SCIM errors and SAML to its pages.

pub mod audit;
pub mod caches;
pub mod claims;
pub mod consumed;
pub mod events;
pub mod group_names;
pub mod intern;
pub mod membership;
pub mod policies;
pub mod slices;
pub mod store;
pub mod tokens;
pub mod views;
pub mod writers;

pub use claims::{ClaimError, UserNames, jit_group_name};
