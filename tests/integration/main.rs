//! Integration tests against a real kube-apiserver and etcd (see `support`).
//! One test binary, so the control plane starts once per run.

mod access;
mod argocd;
mod argocd_rbac;
mod chart;
mod conformance;
mod connector_contract;
mod connectors;
mod controller;
mod crds;
mod examples;
mod gate;
mod gitops;
mod hostile_http;
mod hostile_saml;
mod identity;
mod idp_metadata;
mod isolation;
mod operator;
mod partition;
mod postgres;
mod rbac;
mod safety;
mod saml;
mod scim;
mod stall;
mod support;
