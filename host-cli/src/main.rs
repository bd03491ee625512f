//! `regkern`: train and inspect regkern models from the command line, the way the seed's
//! `python main.py ...` is used.
//!
//! Subcommands: `train` (a synthetic task or a CSV file end to end: progress bar, per-epoch
//! losses, a run directory with TensorBoard events, plots and checkpoints, `--json`), `predict`
//! (a checkpoint over CSV rows), `bench` (the standard workloads timed), `sweep` (a grid of training runs, in parallel, with a results
//! table), `generate` (autoregressive generation after training) and `plan` (the memory plan of
//! a config, for inference and for training).

/// `println!` that never panics: once standard output is closed (`regkern train ... | head`), the
/// command goes on without printing, and still writes its run directory.
macro_rules! outln {
    () => {
        $crate::stdout_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::stdout_line(format_args!($($arg)*))
    };
}

/// `eprintln!` that never panics: a closed or full standard error loses the line, not the run.
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::stderr_line(format_args!($($arg)*))
    };
}

mod bench;
mod config;
mod data;
mod generate;
mod logdir;
mod mem;
mod plan;
mod plot;
mod predict;
mod sweep;
mod tensorboard;
mod train;

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// Train and run small regression models (linear, MLP, transformers) with regkern.
#[derive(Parser, Debug)]
#[command(name = "regkern", version, about, propagate_version = true)]
struct Cli {
    /// Most memory a command may allocate (bytes, or with a K, M, G or T suffix); a plan that
    /// needs more is refused before anything is allocated [default: the machine's memory].
    #[arg(long = "max_memory", alias = "max-memory", global = true, value_parser = mem::parse_size)]
    max_memory: Option<u64>,
    /// Threads for the large products of a step (results are bit-identical at every count; a
    /// sweep gives each of its runs this many, and by default runs cores / threads at a time).
    #[arg(long, global = true, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=256))]
    threads: u64,
    #[command(subcommand)]
    command: Command,
}

/// The `--threads` this process runs with.
static THREADS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);

/// The `--threads` this process runs with (1 unless given).
fn threads() -> usize {
    THREADS.load(Ordering::Relaxed)
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train a model on its synthetic task and report train/validation loss.
    Train(train::TrainArgs),
    /// Train an autoregressive model, or load one (--checkpoint), and generate values after a
    /// prompt (with a KV cache).
    Generate(generate::GenerateArgs),
    /// Print the memory plan (bytes per region) of a model, for inference and training.
    Plan(plan::PlanArgs),
    /// Run a trained model from its checkpoint over CSV rows, one output row per input row.
    Predict(predict::PredictArgs),
    /// Time the standard workloads (K1, P1..P6) against this machine's peaks and a baseline.
    Bench(bench::BenchArgs),
    /// Train every combination of a grid of train flags in parallel; rank the runs by val loss.
    Sweep(sweep::SweepArgs),
}

/// A progress bar of `total` on standard error, ticking on its own, in `template`; hidden with
/// `quiet` or when standard error is not a terminal.
fn progress_bar(total: u64, quiet: bool, template: &str) -> indicatif::ProgressBar {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    use std::io::IsTerminal;
    let bar = if quiet || !std::io::stderr().is_terminal() {
        ProgressBar::hidden()
    } else {
        ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr_with_hz(10))
    };
    bar.set_style(ProgressStyle::with_template(template).expect("the templates are valid"));
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

/// Whether standard output was found closed: nothing more is printed to it.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Write one line to standard output; on any error (a closed pipe, a full disk) stop printing.
fn stdout_line(args: std::fmt::Arguments<'_>) {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if out.write_fmt(args).and_then(|()| out.write_all(b"\n")).and_then(|()| out.flush()).is_err() {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
    }
}

fn stderr_line(args: std::fmt::Arguments<'_>) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_fmt(args).and_then(|()| err.write_all(b"\n"));
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    mem::set_limit(cli.max_memory);
    let threads = cli.threads as usize; // 1..=256, by the parser
    if let Err(msg) = regkern_threads::set_threads(threads) {
        errln!("error: {msg}");
        return ExitCode::FAILURE;
    }
    THREADS.store(threads, Ordering::Relaxed);
    // A model flag the chosen model would ignore is an error, before anything runs.
    let applicable = match matches.subcommand() {
        // (`generate --checkpoint` refuses every model flag itself: the model is the checkpoint's.)
        Some(("generate", m)) if m.get_one::<std::path::PathBuf>("checkpoint").is_some() => Ok(()),
        // (`train --resume` takes the run's own flags, and refuses any given here that differ.)
        Some(("train", m)) if m.get_flag("resume") => Ok(()),
        Some(("train" | "generate" | "plan", m)) => config::refuse_inapplicable(m),
        _ => Ok(()),
    };
    if let Err(msg) = applicable {
        errln!("error: {msg}");
        return ExitCode::FAILURE;
    }
    let result = match cli.command {
        Command::Train(args) => train::run(&args, matches.subcommand_matches("train").unwrap_or(&matches)),
        Command::Generate(args) => {
            generate::run(&args, matches.subcommand_matches("generate").unwrap_or(&matches))
        }
        Command::Plan(args) => plan::run(&args),
        Command::Predict(args) => predict::run(&args),
        Command::Sweep(args) => sweep::run(&args),
        Command::Bench(args) => bench::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            errln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}
