use clap::{Parser, Subcommand};
#[cfg(feature = "dev")]
use roster::dev;
use roster::{allocator, api, operator, telemetry};

/// Roster: identity as Kubernetes resources, provisioned by SCIM or SAML JIT.
#[derive(Parser, Debug)]
#[command(name = "roster", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    log: telemetry::LogArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the operator against the current kubeconfig or in-cluster config.
    Run(Box<operator::RunArgs>),
    /// What `make run` runs: the operator against the current cluster, or a
    /// local control plane when none is reachable, with the examples applied.
    #[cfg(feature = "dev")]
    Dev(Box<dev::DevArgs>),
    /// Print the CustomResourceDefinitions as YAML.
    Crds,
    /// Print what a dry-run policy (`spec.application.dryRun`) would do in
    /// its application: counts, then one line per User and Group.
    Plan {
        /// The policy's namespace.
        #[arg(long, short)]
        namespace: String,
        /// The policy's name.
        policy: String,
    },
}

fn main() -> anyhow::Result<()> {
    // Before the runtime's threads exist, so none gets an arena of its own.
    allocator::limit_arenas();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(run());
    // A blocking task still running (a SAML verification over its budget)
    // must not hold the process after shutdown has drained the server.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _telemetry = telemetry::init(&cli.log);
    match cli.command {
        Command::Crds => print!("{}", api::crds_yaml()),
        Command::Plan { namespace, policy } => {
            let client = kube::Client::try_default().await?;
            print!(
                "{}",
                roster::controller::dry_run::report(client, &namespace, &policy).await?
            );
        }
        Command::Run(args) => {
            let client = kube::Client::try_default().await?;
            operator::run(client, &args, shutdown_signal()).await?;
        }
        #[cfg(feature = "dev")]
        Command::Dev(args) => dev::run(&args, shutdown_signal()).await?,
    }
    Ok(())
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
