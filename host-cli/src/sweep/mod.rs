//! `regkern sweep`: the seed's `experiment_sweep.py` as a tool. Trains every combination of a
//! grid of `train` flags, each as a child process of this binary (`train ... --logdir OUT/<run>
//! --quiet`), several at a time, and ranks the runs by validation loss.
//!
//! ```text
//! regkern sweep --type nlinear --epochs 20 --lr 1e-3,3e-3 --optimizer adam,sgd --custom_act relu,gelu
//! regkern sweep --grid grid.toml --out sweeps/act --jobs 2
//! regkern sweep --grid grid.toml --out sweeps/act --resume      # finish an interrupted sweep
//! regkern sweep --grid grid.toml --out /shared/s --emit-commands | parallel
//! regkern sweep --collect /shared/s                              # the table of what finished
//! ```
//!
//! # The grid
//! Every `train` flag may be given a comma-separated list of values (`--lr 1e-3,3e-3`); a flag
//! with one value is passed to every run unchanged. `--latent_dims` values are lists themselves,
//! so its separator is `;` or `|`: `--latent_dims "128,64;64,32"` is two runs. Switches pass
//! through (`--moe`), or take a list of `true` and `false` (`--moe true,false`). Values reach
//! `train` spelled as given. The sweep's own flags may come before or after the train flags;
//! `--logdir`, `--no_logdir`, `--resume`, `--quiet` and `--json` belong to the sweep, which sets
//! each run's `--logdir` itself.
//!
//! `--grid FILE` reads the same from TOML, keys being train flag names without dashes:
//! ```toml
//! [fixed]                              # one value each
//! type = "nlinear"
//! epochs = 20
//! [grid]                               # a list of values each
//! lr = [1e-3, 3e-3]
//! custom_act = ["relu", "gelu"]
//! latent_dims = ["128,64", [64, 32]]   # a value may be a list only for latent_dims
//! ```
//! Flags on the command line are added to the file's; a flag in both is an error.
//!
//! # Runs, names and the sweep directory
//! Runs are the grid's combinations with the last flag varying fastest, named by their varying
//! flags in grid order: `lr=0.001_optimizer=adam_custom_act=relu`. In names, numbers with a
//! point or an exponent are written in shortest decimal form (`1e-3` on the command line and in
//! TOML both give `0.001`), and characters other than letters, digits and `. - + =` become `-`;
//! a clash gets `-2`, `-3`, ... A grid without varying flags is the one run `run`.
//!
//! | path (under `--out`, default `sweeps/<UTC time>`) | what |
//! |---|---|
//! | `sweep.json` | the plan, written before any run starts: varying flags; runs' names, values, arguments |
//! | `<run>/` | the run's `train --logdir` (`config.json`, `metrics.csv`, `summary.json`, ...) |
//! | `<run>/stdout.log`, `<run>/stderr.log` | what the run printed |
//! | `results.csv`, `results.md` | the table below, best first |
//!
//! The table has the varying flags, best (with its epoch) and final validation loss, final train
//! loss, wall seconds, the run directory and the status, sorted by best validation loss (runs without one
//! after, failed runs last; a failed run shows the last line of its stderr). The best run is
//! named with a `regkern train ...` line that repeats it. A sweep with a failed run exits non-zero.
//!
//! # Resume, emit, collect
//! A run is finished when its `summary.json` exists: `train` writes it last, atomically. A sweep
//! refuses an `--out` that is not empty; `--resume` instead skips the finished runs, deletes the
//! directories of the others (interrupted or failed: `train` refuses an existing run) and runs
//! them from scratch. It refuses a directory whose `sweep.json` plans a different sweep (the
//! order the flags are given in is no difference). A run still going when its sweep was killed
//! (only the sweep, not its process group as Ctrl-C does) must end before a resume.
//!
//! `--emit-commands` plans the sweep (writing `sweep.json`) and prints one self-contained
//! `train` command line per run, with absolute paths to this binary and the run directory, for
//! GNU parallel or a Slurm array; with `--resume`, only the unfinished runs. Relative paths among
//! the train flags (`--data`) stay relative.
//!
//! `--collect DIR` builds the table from every directory under DIR that holds a `summary.json`,
//! wherever the runs ran. Each run's flags come from the command line its summary records
//! (`config.command`); the columns are the varying flags of `DIR/sweep.json` when there is one,
//! else the flags whose values differ between the runs.

mod collect;
mod grid;
mod plan;
mod runner;
mod table;

use std::path::PathBuf;

use clap::{Args, Command, FromArgMatches};

use collect::collect;
use grid::{Axis, Flags, axes_from_toml, axis_from_arg, walk};
use plan::{Plan, default_out, prepare_out};
use runner::{emit_commands, sweep};

/// Examples under `regkern sweep --help`.
const EXAMPLES: &str = "Examples:
  regkern sweep --type nlinear --epochs 20 --lr 1e-3,3e-3 --optimizer adam,sgd --custom_act relu,gelu
  regkern sweep --type nlinear --latent_dims \"128,64;64,32\" --jobs 2 --out sweeps/widths
  regkern sweep --type transformer --epochs 50 --moe true,false --attention_type mha,gqa
  regkern sweep --out sweeps/widths --resume --type nlinear --latent_dims \"128,64;64,32\"
  regkern sweep --grid grid.toml --out /shared/s --emit-commands | parallel
  regkern sweep --collect /shared/s

Run directories are OUT/<run name>, named by the varying flags (lr=0.001_optimizer=adam);
OUT holds sweep.json (the plan), results.csv and results.md.";

/// Arguments of `regkern sweep`.
#[derive(Args, Clone, Debug)]
#[command(after_long_help = EXAMPLES)]
pub struct SweepArgs {
    /// TOML grid file: `[fixed]` flag = value, `[grid]` flag = [values, ...]; keys are train flag
    /// names without dashes.
    #[arg(long, value_name = "FILE")]
    grid: Option<PathBuf>,
    /// Sweep directory; run R logs to OUT/R [default: sweeps/<UTC time>].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Runs at a time [default: the available cores / --threads].
    #[arg(long, short)]
    jobs: Option<usize>,
    /// Finish the sweep in --out: skip runs with a summary.json, rerun the others from scratch.
    #[arg(long)]
    resume: bool,
    /// Print one `train` command line per run (for GNU parallel or a Slurm array) and exit.
    #[arg(long = "emit-commands", alias = "emit_commands")]
    emit_commands: bool,
    /// Build the results table from the finished runs under DIR, and train nothing.
    #[arg(long, value_name = "DIR")]
    collect: Option<PathBuf>,
    /// Print only the results table and the best run.
    #[arg(long, short)]
    quiet: bool,
    /// Print one JSON object (runs best first, the best run, counts) on stdout; progress goes to
    /// stderr.
    #[arg(long)]
    json: bool,
    /// `train` flags, each with one value or a comma-separated list of values (`--lr 1e-3,3e-3`;
    /// for `--latent_dims` the list separator is `;` or `|`: "128,64;64,32").
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "TRAIN FLAGS")]
    train_args: Vec<String>,
}

/// Train flags the sweep sets for each run, so a grid may not.
const SET_BY_SWEEP: [&str; 5] = ["logdir", "no_logdir", "resume", "quiet", "json"];

/// Run the sweep per `args`: plan, then train, emit the commands, or collect.
pub fn run(args: &SweepArgs) -> Result<(), String> {
    let (args, grid) = args.clone().split_grid()?;
    if let Some(dir) = &args.collect {
        return collect(&args, dir);
    }
    let plan = Plan::new(&grid)?;
    plan.validate()?;
    let out = match &args.out {
        Some(dir) => dir.clone(),
        None => default_out()?,
    };
    let finished = prepare_out(&out, &plan, args.resume)?;
    if args.emit_commands {
        emit_commands(&args, &out, &plan, &finished)
    } else {
        sweep(&args, &out, &plan, &finished)
    }
}

impl SweepArgs {
    /// Take the sweep's own flags out of the train flags (clap hands everything after the first
    /// train flag to `train_args`), check the modes, and read the grid from the file and the
    /// command line.
    fn split_grid(mut self) -> Result<(SweepArgs, Vec<Axis>), String> {
        let train = Flags::train();
        let sweep_cmd = SweepArgs::augment_args(Command::new("sweep"));
        let walked = walk(&self.train_args, &train, Some(&Flags::of(&sweep_cmd)), false)?;
        if !walked.sweep.is_empty() {
            let matches = sweep_cmd
                .no_binary_name(true)
                .try_get_matches_from(&walked.sweep)
                .map_err(|e| clap_message(&e))?;
            let late = SweepArgs::from_arg_matches(&matches).map_err(|e| clap_message(&e))?;
            self.grid = late.grid.or(self.grid);
            self.out = late.out.or(self.out);
            self.jobs = late.jobs.or(self.jobs);
            self.collect = late.collect.or(self.collect);
            self.resume |= late.resume;
            self.emit_commands |= late.emit_commands;
            self.quiet |= late.quiet;
            self.json |= late.json;
        }
        self.check_modes(walked.train.is_empty())?;
        let mut axes = match &self.grid {
            Some(path) => axes_from_toml(path, &train)?,
            None => Vec::new(),
        };
        for (flag, raw) in walked.train {
            let axis = axis_from_arg(&flag, raw)?;
            if axes.iter().any(|a| a.flag == axis.flag) {
                return Err(format!("--{} is given twice (on the command line or in --grid)", axis.flag));
            }
            axes.push(axis);
        }
        Ok((self, axes))
    }

    /// Refuse flag combinations that mean nothing.
    fn check_modes(&self, no_train_flags: bool) -> Result<(), String> {
        if self.collect.is_some() {
            if !no_train_flags || self.grid.is_some() {
                return Err("--collect DIR tabulates finished runs: give it no grid".into());
            }
            if self.out.is_some() || self.resume || self.emit_commands || self.jobs.is_some() {
                return Err("--collect DIR takes no --out, --resume, --jobs or --emit-commands".into());
            }
            return Ok(());
        }
        if no_train_flags && self.grid.is_none() {
            return Err("nothing to sweep: give train flags with lists of values \
                        (regkern sweep --lr 1e-3,3e-3 ...) or --grid FILE"
                .into());
        }
        if self.resume && self.out.is_none() {
            return Err("--resume needs --out DIR, the sweep to finish".into());
        }
        if self.jobs == Some(0) {
            return Err("--jobs must be at least 1".into());
        }
        Ok(())
    }
}

/// A clap error on one line: its message and possible values, without `error: `, tips and usage.
fn clap_message(e: &clap::Error) -> String {
    let text = e.to_string();
    let lines =
        text.lines().map(str::trim).take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more"));
    let kept: Vec<&str> = lines.filter(|l| !l.is_empty() && !l.starts_with("tip:")).collect();
    let message = kept.join(" ");
    message.strip_prefix("error: ").unwrap_or(&message).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    // `strings` and `axes` serve the tests of the submodules too.

    pub(super) fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    pub(super) fn axes(cli: &[&str]) -> Result<Vec<Axis>, String> {
        let train = Flags::train();
        let walked = walk(&strings(cli), &train, None, false)?;
        walked.train.into_iter().map(|(f, v)| axis_from_arg(&f, v)).collect()
    }

    #[test]
    fn sweep_flags_after_train_flags_are_the_sweeps() {
        let args = SweepArgs {
            grid: None,
            out: None,
            jobs: None,
            resume: false,
            emit_commands: false,
            collect: None,
            quiet: false,
            json: false,
            train_args: strings(&[
                "--lr", "-1,1e-3", "--jobs", "3", "--out", "d", "--resume", "-q", "--epochs", "2",
            ]),
        };
        let (args, axes) = args.split_grid().unwrap();
        assert_eq!(
            (args.jobs, args.out.as_deref(), args.resume, args.quiet),
            (Some(3), Some(Path::new("d")), true, true)
        );
        assert_eq!(axes.len(), 2);
        assert_eq!(axes[0].values, strings(&["-1", "1e-3"]));
    }
}
