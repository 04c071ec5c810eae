//! Roster: a Kubernetes operator that manages identity as custom resources.
//!
//! Identity providers push users and groups over SCIM, or users arrive just in
//! time through SAML; both become `User` and `Group` resources that a
//! controller provisions into applications. See DESIGN.md for the whole.

pub mod access;
pub mod allocator;
pub mod api;
pub mod cluster;
pub mod connectors;
pub mod controller;
#[cfg(feature = "dev")]
pub mod controlplane;
pub mod deadline;
#[cfg(feature = "dev")]
pub mod demo;
#[cfg(feature = "dev")]
pub mod dev;
pub mod directory;
pub mod gate;
pub mod identity;
pub mod leader;
pub mod metrics;
pub mod names;
pub mod operator;
#[cfg(test)]
mod property;
pub mod public_url;
pub mod saml;
pub mod scim;
pub mod server;
pub mod telemetry;
pub mod urns;
