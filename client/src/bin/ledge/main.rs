//! `ledge`: the command-line client for a Ledge node.
//!
//! Thin: parse arguments (clap), read local files, connect, run one command, print. Every
//! error ends as one line on stderr (`error: ...`) and exit status 1; clap's usage errors exit
//! with 2 (a bad flag value as one line too).

mod args;
mod cluster;
mod consume;
mod group;
mod module;
mod operations;
mod output;
mod produce;
mod security;
mod topic;
mod transform;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use clap::error::{ContextKind, ContextValue, ErrorKind};
use ledge_client::{Client, ClientConfig, Trust};

use crate::args::{
    Cli, Command, ModuleCommand, ModuleUploadArgs, TransformCommand, TransformDeployArgs,
};

/// Where the CA is looked for when neither `--ca` nor `--insecure` is given: the dev CA of a
/// node started with no flags in the current directory.
const CA_DEFAULT: &str = "ledge-data/tls/ca.pem";

/// A CLI user waiting on a node that is not there wants to know soon.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(&error),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("LEDGE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes are for terminals; in a log file or a pipe they are noise.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", error_line(&error));
            ExitCode::FAILURE
        }
    }
}

async fn run(mut cli: Cli) -> anyhow::Result<()> {
    read_local_files(&mut cli.command)?;
    let trust = trust(cli.ca.as_deref(), cli.insecure)?;
    let mut config = ClientConfig::new(cli.server.clone(), trust);
    config.server_name = cli.server_name.clone();
    if let (Some(cert), Some(key)) = (&cli.cert, &cli.key) {
        config.client_certificate = Some(ledge_client::ClientCertificate {
            cert: cert.clone(),
            key: key.clone(),
        });
    }
    config.client_id = "ledge-cli".into();
    config.connect_timeout = CONNECT_TIMEOUT;
    let client = Client::connect(config).await.with_context(|| {
        if cli.server.contains(',') {
            format!("cannot reach any node of {}", cli.server)
        } else {
            format!("cannot reach the node at {}", cli.server)
        }
    })?;
    let result = match cli.command {
        Command::Topic { command } => topic::run(&client, command).await,
        Command::Cluster { command } => cluster::run(&client, command).await,
        Command::Produce(arguments) => produce::run(&client, arguments).await,
        Command::Consume(arguments) => consume::run(&client, arguments).await,
        Command::Group { command } => group::run(&client, command).await,
        Command::Module { command } => module::run(&client, command).await,
        Command::Transform { command } => transform::run(&client, command).await,
        Command::User { command } => security::run_user(&client, command).await,
        Command::Acl { command } => security::run_acl(&client, command).await,
    };
    client.close().await;
    result
}

/// Reads the files a command sends, before connecting: a wrong path is reported as such even
/// when the node is down.
fn read_local_files(command: &mut Command) -> anyhow::Result<()> {
    match command {
        Command::Module {
            command: ModuleCommand::Upload(ModuleUploadArgs { source, .. }),
        }
        | Command::Transform {
            command: TransformCommand::Deploy(TransformDeployArgs { source, .. }),
        } => source.module_bytes = module::read_module_file(&source.module)?,
        _ => {}
    }
    Ok(())
}

/// `error` and its causes as one line, "what we did: why it failed", like anyhow's `{:#}`,
/// except that a cause whose text is already in the line is left out: an error that quotes
/// its source in its own message (`cannot read x: permission denied`, with the I/O error as
/// its source too) would otherwise print the same reason twice.
fn error_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// Prints a command-line error and returns its exit status. A bad value for a flag is one
/// line, like every other error (with the accepted values when there is a fixed list); the
/// rest (help, version, missing or unknown arguments) is clap's own output, with the usage.
fn usage_error(error: &clap::Error) -> ExitCode {
    if !matches!(
        error.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        error.exit();
    }
    eprintln!("{}", one_line(error));
    ExitCode::from(2)
}

/// clap's first line of `error` (`error: invalid value 'x' for '--kind <KIND>'...`), plus the
/// accepted values that clap would print on a line of their own.
fn one_line(error: &clap::Error) -> String {
    let rendered = error.render().to_string();
    let mut line = rendered
        .lines()
        .next()
        .unwrap_or("error: invalid value")
        .to_string();
    if let Some(ContextValue::Strings(valid)) = error.get(ContextKind::ValidValue)
        && !valid.is_empty()
    {
        line.push_str(&format!(" (possible values: {})", valid.join(", ")));
    }
    line
}

/// The CLI's one clock read (progress rates and `--timeout-ms`).
#[expect(clippy::disallowed_methods, reason = "the CLI's one real clock")]
fn now() -> std::time::Instant {
    std::time::Instant::now()
}

/// `--ca`, `--insecure`, or the default CA file if it exists.
fn trust(ca: Option<&Path>, insecure: bool) -> anyhow::Result<Trust> {
    if insecure {
        return Ok(Trust::Insecure);
    }
    if let Some(ca) = ca {
        if !ca.is_file() {
            bail!("CA file {} does not exist", ca.display());
        }
        return Ok(Trust::CaFile(ca.to_path_buf()));
    }
    let default = PathBuf::from(CA_DEFAULT);
    if default.is_file() {
        return Ok(Trust::CaFile(default));
    }
    bail!(
        "no CA certificate to verify the node with: pass --ca FILE (a node writes its dev CA to \
         <data-dir>/tls/ca.pem; {CA_DEFAULT} is used when present) or --insecure to skip \
         verification"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error whose message already quotes its source, as many `thiserror` messages do.
    #[derive(Debug, thiserror::Error)]
    #[error("session timeout 1 ms refused: {0}")]
    struct Quoting(#[source] std::io::Error);

    /// Goal: every cause is printed once, on one line. Method: contexts over an error that
    /// quotes its source, and a multi-line message.
    #[test]
    fn error_lines_say_each_cause_once() {
        let source = std::io::Error::other("below the minimum of 1000 ms");
        let error = anyhow::Error::new(Quoting(source)).context("cannot join the group");
        assert_eq!(
            error_line(&error),
            "cannot join the group: session timeout 1 ms refused: below the minimum of 1000 ms"
        );
        let plain = anyhow::Error::new(std::io::Error::other("disk\nfull")).context("cannot write");
        assert_eq!(error_line(&plain), "cannot write: disk full");
    }
}
