//! `journey-runtime`: the command line of the service.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use journey_runtime::jit::Policy;
use journey_service::datadir;
use journey_service::server::{self, Clock, Config, Jit};
use journey_service::sinks::Sink;
use journey_service::store::Sync;

/// The allocator the VM runs fastest with (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "journey-runtime",
    version,
    about = "Runs journey bytecode in production: durable state, an HTTP API, an action outbox"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serves the HTTP API (docs/runtime.md) until SIGTERM or Ctrl-C.
    Serve {
        /// The data directory: the SQLite database (log, outbox) lives here.
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        /// The address to listen on.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8700")]
        listen: SocketAddr,
        /// Deploy this bytecode and activate its journeys, unless it is the newest deployment.
        #[arg(long, value_name = "FILE.jbc")]
        deploy: Option<PathBuf>,
        /// The bearer token /v1 requests must carry (default: $JOURNEY_TOKEN; none: no auth).
        #[arg(long, env = "JOURNEY_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Where time comes from: the machine's clock, or the inputs' timestamps.
        #[arg(long, value_enum, default_value = "wall")]
        clock: Clock,
        /// How hard commits press to disk.
        #[arg(long, value_enum, default_value = "full")]
        sync: Sync,
        /// Where actions go: `stdout`, `jsonl:PATH` or `webhook:URL` (repeatable).
        #[arg(long = "sink", value_name = "SINK", value_parser = Sink::parse)]
        sinks: Vec<Sink>,
        /// A host webhook sinks may post to (repeatable; no other host is reached).
        #[arg(long = "allow-host", value_name = "HOST")]
        allow_hosts: Vec<String>,
        /// The largest request body accepted, in bytes.
        #[arg(long, default_value_t = 8 << 20)]
        max_body: usize,
        /// The most requests applied in one transaction.
        #[arg(long, default_value_t = 1024)]
        max_batch: usize,
        /// The largest message accepted (its JSON text), in bytes; a larger one is refused
        /// with `too-large`.
        #[arg(long, value_name = "BYTES", default_value_t = 32 << 10)]
        max_message: usize,
        /// With `--clock event`: how far past the machine's clock a timestamp may be (a later
        /// one is refused with `too-far-ahead`), as a duration: `1d`, `6h`, `30m`.
        #[arg(long, value_name = "DURATION", default_value = "1d", value_parser = duration)]
        max_skew: i64,
        /// How long accepted inputs are kept for audit (and delivered actions for
        /// `GET /v1/users`), as a duration; `0s` keeps none.
        #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = duration)]
        keep_inputs: i64,
        /// What the users held in memory may take: `512MiB`, `2GiB`, `300MB`, or bytes. Users
        /// past it leave memory (least recently used first) and come back from the store.
        #[arg(long, value_name = "SIZE", default_value = "512MiB", value_parser = size)]
        memory_limit: usize,
        /// How often the users touched since the last checkpoint are written (a start after a
        /// crash applies what came since again; a longer interval writes less), as a
        /// duration; `0s` writes them at every commit.
        #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = duration)]
        checkpoint_every: i64,
        /// Whether hot predicates run as native code (the answers are the same either way).
        #[arg(long, value_enum, default_value = "on")]
        jit: Jit,
        /// How many evaluations make a predicate hot (with `--jit on` or `all`).
        #[arg(long, value_name = "N", default_value_t = 1000)]
        jit_after: u32,
    },
    /// Writes a consistent copy of a data directory's database to OUT (a new file), while a
    /// service may be serving it; the copy is checked before this answers. Restore it by
    /// stopping the service and putting the copy in place of `DIR/journey.db` (removing
    /// `journey.db-wal` and `journey.db-shm`).
    Backup {
        /// The data directory to copy.
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        /// The file to write (it must not exist).
        #[arg(value_name = "OUT")]
        out: PathBuf,
    },
}

/// A duration in the language's syntax (`1d`, `6h30m`) → milliseconds.
fn duration(text: &str) -> Result<i64, String> {
    journey_runtime::vm::input::parse_duration(text)
        .ok_or_else(|| format!("`{text}` is not a duration such as `1d`, `6h` or `30m`"))
}

/// A size: a number of bytes, or with a unit (`KiB`, `MiB`, `GiB`, `KB`, `MB`, `GB`).
fn size(text: &str) -> Result<usize, String> {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &text[digits.len()..];
    let factor: u64 = match unit {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => {
            return Err(format!(
                "`{text}`: the unit is one of KiB, MiB, GiB, KB, MB, GB"
            ))
        }
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| format!("`{text}` is not a size such as `512MiB`"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            data,
            listen,
            deploy,
            token,
            clock,
            sync,
            sinks,
            allow_hosts,
            max_body,
            max_batch,
            max_message,
            max_skew,
            keep_inputs,
            memory_limit,
            checkpoint_every,
            jit,
            jit_after,
        } => {
            let config = Config {
                data,
                listen,
                deploy,
                token: token.filter(|t| !t.is_empty()),
                clock,
                sync,
                sinks,
                allow_hosts,
                max_body,
                max_batch: max_batch.max(1),
                max_message,
                max_skew,
                keep_inputs,
                memory_limit,
                checkpoint_every: std::time::Duration::from_millis(checkpoint_every as u64),
                jit: match jit {
                    Jit::On => Policy::HotAfter(jit_after),
                    Jit::Off => Policy::Off,
                    Jit::All => Policy::AllAfter(jit_after),
                },
            };
            // The directory is this process's before anything reads it, and a database that
            // is not ours or is damaged is refused before anything writes to it.
            let lock = match datadir::lock(&config.data)
                .and_then(|lock| datadir::inspect(&datadir::database(&config.data)).map(|()| lock))
            {
                Ok(lock) => lock,
                Err(error) => {
                    eprintln!("journey-runtime: error: {error}");
                    return ExitCode::from(2);
                }
            };
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    eprintln!("journey-runtime: error: cannot start: {error}");
                    return ExitCode::from(2);
                }
            };
            let served = runtime.block_on(server::serve(config));
            drop(lock);
            match served {
                Ok(()) => ExitCode::SUCCESS,
                Err(server::Failure::Failed(error)) => {
                    eprintln!("journey-runtime: error: {error}");
                    ExitCode::from(1)
                }
                Err(server::Failure::Damaged(error)) => {
                    eprintln!("journey-runtime: error: {error}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Backup { data, out } => match datadir::backup(&data, &out) {
            Ok(bytes) => {
                eprintln!(
                    "journey-runtime: backed up `{}` to `{}` ({bytes} bytes, checked)",
                    datadir::database(&data).display(),
                    out.display()
                );
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("journey-runtime: error: {error}");
                ExitCode::from(1)
            }
        },
    }
}
