//! Integration tests against a real kube-apiserver and etcd (see `support`).
//! One test binary, so the control plane starts once per run.

mod crds;
mod examples;
mod support;
