//! `ledge`: the command-line client for a Ledge node.
//!
//! Thin: parse arguments (clap), read local files, connect, run one command, print. Every
//! error ends as one line on stderr (`error: ...`) and exit status 1; clap's usage errors exit
//! with 2 (a bad flag value as one line too).

mod admin;
mod args;
mod cluster;
mod consume;
mod group;
mod module;
mod operations;
mod output;
mod produce;
mod security;
mod table;
mod top;
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
    config.sasl = sasl_credentials(
        &cli,
        std::env::var(PASSWORD_ENV).ok(),
        &mut std::io::stdin().lock(),
    )?;
    config.client_id = "ledge-cli".into();
    config.connect_timeout = CONNECT_TIMEOUT;
    let client = match Client::connect(config).await {
        Ok(client) => client,
        // Its own line: it names the user and mechanism (never the password).
        Err(error @ ledge_client::ConnectError::Authentication { .. }) => bail!(error),
        Err(error) => {
            return Err(error).with_context(|| {
                if cli.server.contains(',') {
                    format!("cannot reach any node of {}", cli.server)
                } else {
                    format!("cannot reach the node at {}", cli.server)
                }
            });
        }
    };
    let result = match cli.command {
        Command::Topic { command } => topic::run(&client, command).await,
        Command::Cluster { command } => cluster::run(&client, command).await,
        Command::Produce(arguments) => produce::run(&client, arguments).await,
        Command::Consume(arguments) => consume::run(&client, arguments).await,
        Command::Group { command } => group::run(&client, command).await,
        Command::Module { command } => module::run(&client, command).await,
        Command::Transform { command } => transform::run(&client, command).await,
        Command::Table { command } => table::run(&client, command).await,
        Command::User { command } => security::run_user(&client, command).await,
        Command::Acl { command } => security::run_acl(&client, command).await,
        Command::Quota { command } => security::run_quota(&client, command).await,
        Command::Top(arguments) => top::run(&client, arguments).await,
        Command::Admin { command } => admin::run(&client, command).await,
    };
    client.close().await;
    result
}

/// The environment variable `--user`'s password is read from.
const PASSWORD_ENV: &str = "LEDGE_PASSWORD";

/// `--user`'s credentials: the password from `env_password` (LEDGE_PASSWORD) or, with
/// `--password-stdin`, the first line of `stdin` (without its line end). Exactly one source:
/// both, or neither, is an error. The password is never printed.
fn sasl_credentials(
    cli: &Cli,
    env_password: Option<String>,
    stdin: &mut dyn std::io::BufRead,
) -> anyhow::Result<Option<ledge_client::SaslCredentials>> {
    let Some(user) = &cli.user else {
        return Ok(None);
    };
    let password = match (env_password, cli.password_stdin) {
        (Some(_), true) => bail!(
            "--user {user}: give the password one way, {PASSWORD_ENV} or --password-stdin, not both"
        ),
        (None, false) => {
            bail!("--user {user} needs a password: set {PASSWORD_ENV} or pass --password-stdin")
        }
        (Some(password), false) => password,
        (None, true) => {
            let mut line = String::new();
            stdin
                .read_line(&mut line)
                .context("--password-stdin: cannot read standard input")?;
            let password = line.trim_end_matches(['\r', '\n']);
            if password.is_empty() {
                bail!("--password-stdin: standard input held no password (an empty first line)");
            }
            password.to_owned()
        }
    };
    let mechanism: ledge_client::SaslMechanism = cli
        .sasl_mechanism
        .parse()
        .map_err(|message: String| anyhow::anyhow!(message))?;
    Ok(Some(
        ledge_client::SaslCredentials::new(user.clone(), password).with_mechanism(mechanism),
    ))
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

/// The CLI's one clock read (progress rates, `--timeout-ms`, `top`'s rates).
#[expect(clippy::disallowed_methods, reason = "the CLI's one real clock")]
fn now() -> std::time::Instant {
    std::time::Instant::now()
}

/// The CLI's one wall-clock read: milliseconds since the Unix epoch (`top`'s frame time).
#[expect(clippy::disallowed_methods, reason = "the CLI's one wall clock")]
fn wall_time_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
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

    /// Goal: `--user` takes its password from exactly one source, refuses none or both, and
    /// no error repeats the password; `--password-stdin` reads one line only.
    #[test]
    fn user_passwords_come_from_one_source() {
        let parse = |args: &[&str]| {
            let mut all = vec!["ledge"];
            all.extend_from_slice(args);
            all.extend_from_slice(&["topic", "list"]);
            Cli::try_parse_from(all).unwrap()
        };
        let mut no_input: &[u8] = b"";
        let anonymous = parse(&[]);
        assert!(
            sasl_credentials(&anonymous, Some("ignored".into()), &mut no_input)
                .unwrap()
                .is_none()
        );
        let from_env = parse(&["--user", "alice"]);
        let credentials = sasl_credentials(&from_env, Some("s3cret".into()), &mut no_input)
            .unwrap()
            .unwrap();
        assert_eq!(
            credentials,
            ledge_client::SaslCredentials::new("alice", "s3cret")
        );
        let none = sasl_credentials(&from_env, None, &mut no_input).unwrap_err();
        assert!(none.to_string().contains("LEDGE_PASSWORD"), "{none}");

        let from_stdin = parse(&[
            "--user",
            "alice",
            "--password-stdin",
            "--sasl-mechanism",
            "PLAIN",
        ]);
        let mut input: &[u8] = b"line-one\r\nrecords follow\n";
        let credentials = sasl_credentials(&from_stdin, None, &mut input)
            .unwrap()
            .unwrap();
        assert_eq!(
            credentials,
            ledge_client::SaslCredentials::new("alice", "line-one")
                .with_mechanism(ledge_client::SaslMechanism::Plain)
        );
        assert_eq!(input, b"records follow\n");
        let both =
            sasl_credentials(&from_stdin, Some("env-secret".into()), &mut no_input).unwrap_err();
        assert!(both.to_string().contains("not both"), "{both}");
        assert!(!both.to_string().contains("env-secret"));
        let mut empty: &[u8] = b"\n";
        assert!(sasl_credentials(&from_stdin, None, &mut empty).is_err());
    }
}
