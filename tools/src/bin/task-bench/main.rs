//! `task-bench`: the Task service's load generator and its benchmark helpers.

mod ceiling;
mod drain;
mod load;
mod processor;
mod report;
mod seed;
mod watches;

use std::{net::SocketAddr, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};

/// The same allocator as the service, so the generator takes as little CPU from it as it can.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Load generator for the Task service, and the pieces a benchmark run needs beside it.
#[derive(Debug, Parser)]
#[command(name = "task-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs a scenario against a Task service and prints its figures.
    Run(load::Args),
    /// Serves task.Task answering from memory: the ceiling of gRPC on this machine.
    Ceiling {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:50060")]
        listen: SocketAddr,
    },
    /// Serves processor.Processor answering at once, after writing COMPLETED (one HSET).
    Processor {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:50061")]
        listen: SocketAddr,
    },
    /// Writes COMPLETED tasks with deterministic ids straight into Redis, and prints the memory
    /// they take.
    Seed(seed::Args),
    /// Watches the dispatch queue drain and reports the rate.
    Drain(drain::Args),
    /// Opens many WatchTask streams and measures what they cost while idle, and how soon they
    /// all see their tasks end.
    Watches(watches::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Run(args) => load::run(args).await,
            Command::Ceiling { listen } => ceiling::serve(listen).await,
            Command::Processor { listen } => processor::serve(listen).await,
            Command::Seed(args) => seed::run(args).await,
            Command::Drain(args) => drain::run(args).await,
            Command::Watches(args) => watches::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("task-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Errors of the tool.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Where the benchmark's Redis listens (for the subcommands that talk to it directly).
#[derive(Debug, clap::Args)]
struct RedisAddr {
    /// Redis host.
    #[arg(long, default_value = "127.0.0.1")]
    redis_host: String,
    /// Redis port.
    #[arg(long, default_value_t = 6379)]
    redis_port: u16,
}

impl RedisAddr {
    /// A client for it.
    fn client(&self) -> Result<bb8_redis::redis::Client, BoxError> {
        Ok(bb8_redis::redis::Client::open((
            self.redis_host.as_str(),
            self.redis_port,
        ))?)
    }
}

/// Parses `10s`, `500ms`, `2m`.
fn duration(raw: &str) -> Result<Duration, humantime::DurationError> {
    humantime::parse_duration(raw)
}

/// The i-th of a deterministic id space: the same ids for `seed` and `run --seeded`.
fn seeded_id(i: u64) -> String {
    let mixed = (u128::from(i) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835);
    uuid::Builder::from_random_bytes(mixed.to_le_bytes())
        .into_uuid()
        .to_string()
}
