//! `roster dev` (what `make run` runs): the operator against the current
//! cluster, or, with none reachable, against a local control plane it starts
//! itself, with the CRDs installed, `examples/` applied and demo applications
//! for them running (see `demo`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery::{Discovery, Scope};

use crate::controlplane::{Binaries, ControlPlane};
use crate::directory::writers::EXAMPLES_MANAGER;
use crate::{api, cluster, operator};

/// Options of `roster dev`.
#[derive(Args, Debug, Clone)]
pub struct DevArgs {
    /// Directory of YAML manifests applied after the CRDs.
    #[arg(long, default_value = "examples")]
    pub examples: PathBuf,
    /// Start a local control plane even if a cluster is reachable.
    #[arg(long)]
    pub local: bool,
    /// Apply `examples/` to the current cluster too. Without it they are
    /// applied only to a local control plane: their tokens are public.
    #[arg(long)]
    pub apply_examples: bool,
    /// Where the demo identity provider listens (for the examples' SAML policies).
    #[arg(long, default_value = "127.0.0.1:8070")]
    pub demo_idp_listen: std::net::SocketAddr,
    /// Where the demo application behind the SSO gate listens.
    #[arg(long, default_value = "127.0.0.1:8060")]
    pub demo_app_listen: std::net::SocketAddr,
    #[command(flatten)]
    pub run: operator::RunArgs,
}

pub async fn run(
    args: &DevArgs,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let (client, local, cluster_url) = connect(args.local).await?;
    let kubeconfig_hint = match &local {
        Some((plane, _)) => format!("export KUBECONFIG={}", plane.kubeconfig_path().display()),
        None => format!("Using your current cluster, {cluster_url}."),
    };

    cluster::install_crds(&client, &api::crds(), Duration::from_secs(60)).await?;
    // The examples' tokens are in this repository: never applied to a real
    // cluster unless asked for.
    let applied = if local.is_some() || args.apply_examples {
        apply_examples(&client, &args.examples).await?
    } else {
        Vec::new()
    };

    let kubectl = local
        .as_ref()
        .and_then(|(_, b)| b.kubectl.clone())
        .map_or_else(|| "kubectl".to_owned(), |p| p.display().to_string());
    println!();
    println!("Roster is starting. {kubeconfig_hint}");
    for line in &applied {
        println!("  applied {line}");
    }
    if applied.is_empty() && local.is_none() {
        println!(
            "  {} not applied here: the tokens in it are public. `make run ARGS=--apply-examples` applies them; `make run ARGS=--local` starts a local control plane instead.",
            args.examples.display()
        );
    }
    // SAML is served only with a public URL (the ACS URL and audience never
    // come from request headers): locally, where this process listens.
    let mut run_args = args.run.clone();
    let origin = run_args
        .server
        .public_url
        .get_or_insert_with(|| format!("http://localhost:{}", args.run.server.listen.port()))
        .clone();
    // Somewhere for the examples' applications to be (a demo SCIM
    // application, a webhook receiver), and someone to sign in as (a demo
    // IdP, a demo application behind the gate), all on this machine.
    let listen = run_args.server.listen;
    let reach = if listen.ip().is_unspecified() {
        std::net::SocketAddr::from(([127, 0, 0, 1], listen.port()))
    } else {
        listen
    };
    let demo = crate::demo::start(
        &client,
        applied_policies(&client, &applied).await,
        &crate::demo::Options {
            idp_listen: args.demo_idp_listen,
            app_listen: args.demo_app_listen,
            public_url: origin.clone(),
            roster: format!("http://{reach}"),
        },
    )
    .await;
    for endpoint in endpoints(&client, &applied, &origin).await {
        match endpoint {
            Endpoint::Scim { url, token } => {
                println!("SCIM base URL: {url}");
                println!("  token:  {token}");
                println!("  try:    curl -s -H 'Authorization: Bearer {token}' {url}/Users");
                let curl = format!(
                    "curl -s -H 'Authorization: Bearer {token}' -H 'Content-Type: application/scim+json'"
                );
                println!(
                    "  push a user:  id=$({curl} -X POST -d '{{\"userName\":\"ada@example.com\",\"active\":true}}' {url}/Users | grep -o '\"id\":\"[^\"]*' | head -1 | cut -d'\"' -f4); echo $id"
                );
                println!(
                    "  and a group:  {curl} -X POST -d '{{\"displayName\":\"Engineering\",\"members\":[{{\"value\":\"'$id'\"}}]}}' {url}/Groups"
                );
                println!(
                    "  deactivate:   {curl} -X PATCH -d '{{\"schemas\":[\"urn:ietf:params:scim:api:messages:2.0:PatchOp\"],\"Operations\":[{{\"op\":\"replace\",\"path\":\"active\",\"value\":false}}]}}' {url}/Users/$id"
                );
            }
            Endpoint::Saml { base } => {
                println!("SAML metadata URL: {base}/metadata");
                println!("  login:  {base}/login   (the IdP posts responses to {base}/acs)");
            }
        }
    }
    for line in &demo.lines {
        println!("{line}");
    }
    println!("Try:");
    println!("  {kubectl} get roster -A");
    println!("  {kubectl} explain users.spec");
    println!(
        "Press Ctrl-C to stop{}.",
        if local.is_some() {
            " (the local control plane stops too)"
        } else {
            ""
        }
    );
    println!();

    let result = operator::run(client, &run_args, shutdown).await;
    drop(demo);
    if let Some((plane, _)) = local {
        tracing::info!("stopping the local control plane");
        plane.stop();
    }
    result
}

/// What a newcomer can point an IdP at.
enum Endpoint {
    /// A Scim policy's base URL and one of its tokens.
    Scim { url: String, token: String },
    /// A policy with SAML trust: `/saml/{namespace}/{policy}`.
    Saml { base: String },
}

/// The endpoints of each applied policy. `applied` holds `kind namespace/name` lines.
async fn endpoints(client: &kube::Client, applied: &[String], origin: &str) -> Vec<Endpoint> {
    use crate::api::Mode;
    use k8s_openapi::api::core::v1::Secret;
    let mut endpoints = Vec::new();
    for (namespace, policy) in applied_policies(client, applied).await {
        let namespace = namespace.as_str();
        let name = policy.metadata.name.as_deref().unwrap_or_default();
        if let (Mode::Scim, Some(scim)) = (policy.spec.mode, &policy.spec.scim) {
            let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
            let token = secrets
                .get(&scim.token_secret_ref.name)
                .await
                .ok()
                .and_then(|s| s.data)
                .and_then(|d| d.into_values().next())
                .and_then(|v| String::from_utf8(v.0).ok());
            if let Some(token) = token {
                endpoints.push(Endpoint::Scim {
                    url: format!("{origin}/scim/{namespace}/{name}/v2"),
                    token: token.trim().to_owned(),
                });
            }
        }
        if policy.spec.saml.is_some() {
            endpoints.push(Endpoint::Saml {
                base: format!("{origin}/saml/{namespace}/{name}"),
            });
        }
    }
    endpoints
}

/// The policies among `applied` (`kind namespace/name` lines), as the
/// cluster holds them, with their namespaces.
pub async fn applied_policies(
    client: &kube::Client,
    applied: &[String],
) -> Vec<(String, crate::api::ProvisioningPolicy)> {
    let mut found = Vec::new();
    for line in applied {
        let Some(("ProvisioningPolicy", rest)) = line.split_once(' ') else {
            continue;
        };
        let Some((namespace, name)) = rest.split_once('/') else {
            continue;
        };
        let policies: Api<crate::api::ProvisioningPolicy> =
            Api::namespaced(client.clone(), namespace);
        if let Ok(policy) = policies.get(name).await {
            found.push((namespace.to_owned(), policy));
        }
    }
    found
}

/// The current cluster if one answers, else a local control plane; and
/// the API server's URL.
async fn connect(
    force_local: bool,
) -> anyhow::Result<(kube::Client, Option<(ControlPlane, Binaries)>, String)> {
    if !force_local {
        match current_cluster().await {
            Ok((client, url)) => return Ok((client, None, url)),
            Err(error) => {
                tracing::info!(%error, "no cluster reachable; starting a local control plane")
            }
        }
    }
    let binaries = Binaries::from_env()?;
    let plane = ControlPlane::start(&binaries).await?;
    tracing::info!(dir = %plane.dir().display(), "local control plane is up");
    let config = plane.config().await?;
    let url = config.cluster_url.to_string();
    let client = kube::Client::try_from(config)?;
    Ok((client, Some((plane, binaries)), url))
}

async fn current_cluster() -> anyhow::Result<(kube::Client, String)> {
    let config = kube::Config::infer().await?;
    let url = config.cluster_url.to_string();
    let client = kube::Client::try_from(config)?;
    tokio::time::timeout(Duration::from_secs(5), client.apiserver_version())
        .await
        .context("the API server did not answer within 5s")??;
    Ok((client, url))
}

/// Applies every YAML document under `dir` (server-side apply), namespaces
/// first. Returns `kind namespace/name` for each.
pub async fn apply_examples(client: &kube::Client, dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    let mut objects = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file)?;
        for doc in serde_saphyr::from_multiple::<serde_json::Value>(&text)
            .with_context(|| format!("parsing {}", file.display()))?
        {
            if !doc.is_null() {
                objects.push(serde_json::from_value::<DynamicObject>(doc)?);
            }
        }
    }
    objects.sort_by_key(|o| o.types.as_ref().is_none_or(|t| t.kind != "Namespace"));

    let discovery = Discovery::new(client.clone()).run().await?;
    let params = PatchParams::apply(EXAMPLES_MANAGER).force();
    let mut applied = Vec::new();
    for object in objects {
        let types = object
            .types
            .clone()
            .context("an example lacks apiVersion/kind")?;
        let gvk = kube::core::GroupVersionKind::try_from(&types)?;
        let (resource, caps) = discovery
            .resolve_gvk(&gvk)
            .with_context(|| format!("the cluster does not serve {}", types.kind))?;
        let name = object
            .metadata
            .name
            .clone()
            .context("an example lacks a name")?;
        let api: Api<DynamicObject> = match (caps.scope, object.metadata.namespace.as_deref()) {
            (Scope::Namespaced, Some(ns)) => Api::namespaced_with(client.clone(), ns, &resource),
            (Scope::Namespaced, None) => Api::default_namespaced_with(client.clone(), &resource),
            (Scope::Cluster, _) => Api::all_with(client.clone(), &resource),
        };
        api.patch(&name, &params, &Patch::Apply(&object)).await?;
        let ns = object
            .metadata
            .namespace
            .map(|n| format!("{n}/"))
            .unwrap_or_default();
        applied.push(format!("{} {ns}{name}", types.kind));
    }
    Ok(applied)
}
