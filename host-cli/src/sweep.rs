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
//! The table has the varying flags, final and best validation loss, final train loss, wall
//! seconds, the run directory and the status, sorted by final validation loss (runs without one
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

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, Command, FromArgMatches};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};

use crate::logdir::{utc_stamp, write_atomic};
use crate::train::TrainArgs;

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
    /// Runs at a time [default: the available cores].
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

/// Flags whose one value is a comma-separated list; their sweep list separator is `;` or `|`.
const LIST_VALUED: [&str; 1] = ["latent_dims"];

/// The largest grid: beyond it a typo (a list where one value was meant) is the likelier cause.
const MAX_RUNS: usize = 100_000;

/// Longest run name before its uniqueness suffix, well under file systems' 255 bytes.
const MAX_NAME_LEN: usize = 150;

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

// ---------------------------------------------------------------------------------------------
// Flags and the grid

/// A long flag of a clap command.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Flag {
    /// Its name without dashes (`latent_dims`, not the alias `latent-dims`).
    long: String,
    /// False for a switch (`--moe`).
    takes_value: bool,
}

/// The flags of a clap command, found by long name, alias or `-c` short.
struct Flags {
    flags: Vec<Flag>,
    by_name: HashMap<String, usize>,
}

impl Flags {
    /// The flags `cmd` defines. Read from clap, so train's flags are defined in one place only.
    fn of(cmd: &Command) -> Self {
        let (mut flags, mut by_name) = (Vec::new(), HashMap::new());
        for arg in cmd.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            let i = flags.len();
            flags.push(Flag { long: long.to_string(), takes_value: arg.get_action().takes_values() });
            by_name.insert(long.to_string(), i);
            for alias in arg.get_all_aliases().into_iter().flatten() {
                by_name.insert(alias.to_string(), i);
            }
            if let Some(c) = arg.get_short() {
                by_name.insert(format!("-{c}"), i);
            }
        }
        Flags { flags, by_name }
    }

    /// The flags of `regkern train`.
    fn train() -> Self {
        Flags::of(&TrainArgs::augment_args(Command::new("train")))
    }

    /// The flag named `name`: a long name or alias without dashes, or `-c`.
    fn get(&self, name: &str) -> Option<&Flag> {
        self.by_name.get(name).map(|&i| &self.flags[i])
    }
}

/// What [`walk`] makes of an argument list.
#[derive(Debug, Default)]
struct Walked {
    /// Train flags in order, each with its value as written (`None`: a switch given bare).
    train: Vec<(Flag, Option<String>)>,
    /// The sweep's own flags among them, with their values, to be parsed again.
    sweep: Vec<String>,
}

/// Split `tokens` into train flags with their values and, when `sweep` is given, the sweep's own
/// flags (which win over train flags of the same name). A switch takes a following
/// `true`/`false` list as its value. `lenient` (for command lines recorded by other versions):
/// keep an unknown flag, with the next token as its value unless that is a flag.
fn walk(tokens: &[String], train: &Flags, sweep: Option<&Flags>, lenient: bool) -> Result<Walked, String> {
    let mut out = Walked::default();
    let mut i = 0;
    while i < tokens.len() {
        let tok = &tokens[i];
        i += 1;
        if tok == "--" {
            continue;
        }
        let (name, inline) = match tok.strip_prefix("--") {
            Some(rest) => match rest.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (rest, None),
            },
            None if tok.len() == 2 && tok.starts_with('-') => (tok.as_str(), None),
            None => return Err(format!("unexpected {tok:?}: train flags look like --lr 1e-3,3e-3")),
        };
        if let Some(flag) = sweep.and_then(|s| s.get(name)) {
            out.sweep.push(tok.clone());
            if flag.takes_value && inline.is_none() && i < tokens.len() {
                out.sweep.push(tokens[i].clone());
                i += 1;
            }
            continue;
        }
        let next_is_value = |t: Option<&String>| t.is_some_and(|t| !t.starts_with("--"));
        let flag = match train.get(name) {
            Some(flag) => flag.clone(),
            None if lenient => {
                let takes_value = inline.is_some() || next_is_value(tokens.get(i));
                Flag { long: name.trim_start_matches('-').to_string(), takes_value }
            }
            None if name == "help" || name == "-h" => {
                return Err(
                    "--help goes before the train flags: regkern sweep --help (and regkern train --help \
                            for train's flags)"
                        .into(),
                );
            }
            None => return Err(format!("{tok} is not a flag of `regkern train` (see regkern train --help)")),
        };
        let value = if inline.is_some() {
            inline
        } else if flag.takes_value {
            let v = tokens.get(i).ok_or_else(|| format!("{tok} needs a value"))?;
            i += 1;
            Some(v.clone())
        } else if tokens.get(i).is_some_and(|t| t.split(',').all(|v| switch_value(v).is_some())) {
            i += 1;
            Some(tokens[i - 1].clone())
        } else {
            None
        };
        out.train.push((flag, value));
    }
    Ok(out)
}

/// `true` or `false`, any case.
fn switch_value(v: &str) -> Option<&'static str> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" => Some("true"),
        "false" => Some("false"),
        _ => None,
    }
}

/// One train flag of the grid and the values it takes.
#[derive(Clone, Debug, PartialEq)]
struct Axis {
    /// Long name without dashes.
    flag: String,
    /// A switch: its values are `true` (given) and `false` (left out).
    switch: bool,
    /// One value, or the list to sweep over.
    values: Vec<String>,
}

/// The axis of a flag from the command line: `--lr 1e-3,3e-3`, `--moe`, `--moe true,false`.
fn axis_from_arg(flag: &Flag, raw: Option<String>) -> Result<Axis, String> {
    if SET_BY_SWEEP.contains(&flag.long.as_str()) {
        return Err(format!("--{} is the sweep's: each run logs to OUT/<run name> (see --out)", flag.long));
    }
    let values = match raw {
        Some(raw) => split_list(&flag.long, &raw)?,
        None => vec!["true".to_string()],
    };
    let values = if flag.takes_value {
        values
    } else {
        let check = |v: String| {
            switch_value(&v).map(str::to_string).ok_or_else(|| {
                format!("--{} is a switch: its values are true and false, not {v:?}", flag.long)
            })
        };
        values.into_iter().map(check).collect::<Result<_, _>>()?
    };
    Ok(Axis { flag: flag.long.clone(), switch: !flag.takes_value, values })
}

/// Split a command-line list (`,`, or `;` and `|` for [`LIST_VALUED`] flags); refuse empty and
/// repeated values.
fn split_list(flag: &str, raw: &str) -> Result<Vec<String>, String> {
    let separators: &[char] = if LIST_VALUED.contains(&flag) { &[';', '|'] } else { &[','] };
    let values: Vec<String> = raw.split(separators).map(|v| v.trim().to_string()).collect();
    if values.iter().any(String::is_empty) {
        let hint = if LIST_VALUED.contains(&flag) { " (its runs are separated by ; or |)" } else { "" };
        return Err(format!("--{flag} {raw:?}: an empty value in the list{hint}"));
    }
    check_distinct(flag, &values)?;
    Ok(values)
}

fn check_distinct(flag: &str, values: &[String]) -> Result<(), String> {
    let mut seen = HashSet::new();
    match values.iter().find(|v| !seen.insert(v.as_str())) {
        Some(v) => Err(format!("--{flag} lists {v:?} twice")),
        None => Ok(()),
    }
}

/// The axes of a TOML grid file: `[fixed]` (one value each), then `[grid]` (lists), in file order.
fn axes_from_toml(path: &Path, train: &Flags) -> Result<Vec<Axis>, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let doc: toml::Table = text.parse().map_err(|e| format!("{}: {e}", path.display()))?;
    let at = |msg: String| format!("{}: {msg}", path.display());
    let mut axes: Vec<Axis> = Vec::new();
    for (section, value) in &doc {
        let listed = match section.as_str() {
            "fixed" => false,
            "grid" => true,
            _ => return Err(at(format!("unknown key {section:?}: expected the tables [fixed] and [grid]"))),
        };
        let table = value.as_table().ok_or_else(|| at(format!("{section} must be a table: [{section}]")))?;
        for (key, value) in table {
            let flag = train
                .get(key)
                .filter(|_| !key.starts_with('-'))
                .ok_or_else(|| at(format!("[{section}] {key} is not a flag of `regkern train`")))?;
            if SET_BY_SWEEP.contains(&flag.long.as_str()) {
                return Err(at(format!("[{section}] {key}: the sweep sets --{} itself", flag.long)));
            }
            let values = if listed {
                let items = value.as_array().ok_or_else(|| {
                    at(format!("[grid] {key} must be a list of values, like {key} = [a, b]"))
                })?;
                if items.is_empty() {
                    return Err(at(format!("[grid] {key} is an empty list")));
                }
                items.iter().map(|v| toml_value(flag, v)).collect::<Result<Vec<_>, _>>()
            } else {
                toml_value(flag, value).map(|v| vec![v])
            }
            .map_err(|e| at(format!("[{section}] {key}: {e}")))?;
            check_distinct(&flag.long, &values).map_err(at)?;
            if axes.iter().any(|a| a.flag == flag.long) {
                return Err(at(format!("{key} is given twice (in [fixed] and [grid]?)")));
            }
            axes.push(Axis { flag: flag.long.clone(), switch: !flag.takes_value, values });
        }
    }
    Ok(axes)
}

/// One TOML value of `flag` as the train argument it becomes.
fn toml_value(flag: &Flag, v: &toml::Value) -> Result<String, String> {
    use toml::Value as T;
    if !flag.takes_value {
        return match v {
            T::Boolean(b) => Ok(b.to_string()),
            _ => Err(format!("--{} is a switch: give true or false, not {v}", flag.long)),
        };
    }
    match v {
        T::String(s) => Ok(s.clone()),
        T::Integer(i) => Ok(i.to_string()),
        T::Float(f) if f.is_finite() => Ok(f.to_string()),
        T::Float(f) => Err(format!("{f} is not a finite number")),
        T::Boolean(b) => Err(format!("--{} takes a value, not {b}", flag.long)),
        T::Array(items) if LIST_VALUED.contains(&flag.long.as_str()) => {
            let parts = items
                .iter()
                .map(|item| match item {
                    T::Integer(i) => Ok(i.to_string()),
                    T::String(s) => Ok(s.clone()),
                    _ => Err(format!("a {} in a list of widths", item.type_str())),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(parts.join(","))
        }
        T::Array(_) => Err("a list is one value only for latent_dims; lists to sweep go in [grid]".into()),
        _ => Err(format!("a {} is not a flag value (use a string, number or boolean)", v.type_str())),
    }
}

// ---------------------------------------------------------------------------------------------
// The plan

/// One training run of a sweep.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Run {
    /// Its directory under the sweep directory.
    name: String,
    /// The value of each varying flag, in [`Plan::varying`] order.
    values: Vec<String>,
    /// `train` arguments, without `--logdir` and `--quiet`.
    args: Vec<String>,
}

/// Every run of a grid.
#[derive(Debug, PartialEq, Eq)]
struct Plan {
    /// The flags with more than one value, in grid order.
    varying: Vec<String>,
    /// Which of them are switches (values `true`/`false`).
    switches: Vec<bool>,
    /// The combinations, the last flag varying fastest.
    runs: Vec<Run>,
}

impl Plan {
    /// The Cartesian product of `axes`, with unique run names.
    fn new(axes: &[Axis]) -> Result<Plan, String> {
        let total = axes
            .iter()
            .try_fold(1usize, |n, a| n.checked_mul(a.values.len()).filter(|&n| n <= MAX_RUNS))
            .ok_or_else(|| format!("the grid has more than {MAX_RUNS} combinations"))?;
        let varying: Vec<&Axis> = axes.iter().filter(|a| a.values.len() > 1).collect();
        let mut names = HashSet::new();
        let mut runs = Vec::with_capacity(total);
        for index in 0..total {
            let (mut rest, mut args, mut values, mut parts) = (index, Vec::new(), Vec::new(), Vec::new());
            let mut picks = vec![0; axes.len()];
            // Mixed radix, the last axis fastest: nested loops over the flags in grid order.
            for (pick, axis) in picks.iter_mut().zip(axes).rev() {
                (*pick, rest) = (rest % axis.values.len(), rest / axis.values.len());
            }
            for (axis, &pick) in axes.iter().zip(&picks) {
                let v = &axis.values[pick];
                if !axis.switch || v == "true" {
                    args.push(format!("--{}", axis.flag));
                }
                if !axis.switch {
                    args.push(v.clone());
                }
                if axis.values.len() > 1 {
                    values.push(v.clone());
                    parts.push(format!("{}={}", axis.flag, name_value(v)));
                }
            }
            let base = if parts.is_empty() { "run".to_string() } else { sanitize(&parts.join("_")) };
            runs.push(Run { name: unique_name(&mut names, base), values, args });
        }
        Ok(Plan {
            varying: varying.iter().map(|a| a.flag.clone()).collect(),
            switches: varying.iter().map(|a| a.switch).collect(),
            runs,
        })
    }

    /// Parse every run's arguments as `train` would, so a bad value fails before any run starts.
    fn validate(&self) -> Result<(), String> {
        let mut cmd = TrainArgs::augment_args(Command::new("train")).no_binary_name(true);
        for run in &self.runs {
            if let Err(e) = cmd.try_get_matches_from_mut(&run.args) {
                let which =
                    if self.varying.is_empty() { String::new() } else { format!("run {}: ", run.name) };
                return Err(format!("{which}train rejects {} (see regkern train --help)", clap_message(&e)));
            }
        }
        Ok(())
    }

    /// How `other` differs from this plan, if it does in more than the order of the flags.
    fn difference(&self, other: &Plan) -> Option<String> {
        // `--flag value` and `--switch` items, sorted: the order flags were given in is no difference.
        let items = |args: &[String]| {
            let mut items: Vec<String> = Vec::new();
            for a in args {
                match items.last_mut() {
                    Some(last) if !a.starts_with("--") => {
                        last.push(' ');
                        last.push_str(a);
                    }
                    _ => items.push(a.clone()),
                }
            }
            items.sort();
            items
        };
        let runs = |p: &Plan| -> HashMap<String, Vec<String>> {
            p.runs.iter().map(|r| (r.name.clone(), items(&r.args))).collect()
        };
        let (mine, theirs) = (runs(self), runs(other));
        if let Some(r) = self.runs.iter().find(|r| !theirs.contains_key(&r.name)) {
            return Some(format!("run {} is not in the new grid", r.name));
        }
        if let Some(r) = other.runs.iter().find(|r| !mine.contains_key(&r.name)) {
            return Some(format!("it plans no run {}", r.name));
        }
        let r = self.runs.iter().find(|r| mine[&r.name] != theirs[&r.name])?;
        let (old, new) = (&mine[&r.name], &theirs[&r.name]);
        let only =
            |a: &[String], b: &[String]| a.iter().filter(|x| !b.contains(x)).cloned().collect::<Vec<_>>();
        let (gone, added) = (only(old, new), only(new, old));
        let mut parts = Vec::new();
        if !gone.is_empty() {
            parts.push(format!("planned with {}", gone.join(" ")));
        }
        if !added.is_empty() {
            parts.push(format!("now with {}", added.join(" ")));
        }
        Some(format!("run {}: {}", r.name, parts.join(", ")))
    }

    /// `sweep.json`: what [`Plan::read`] reads back.
    fn to_json(&self) -> Value {
        let runs: Vec<Value> =
            self.runs.iter().map(|r| json!({"name": r.name, "values": r.values, "args": r.args})).collect();
        json!({"regkern_sweep": 1, "varying": self.varying, "switches": self.switches, "runs": runs})
    }

    /// The plan in `dir/sweep.json`, if there is one.
    fn read(dir: &Path) -> Result<Option<Plan>, String> {
        let path = dir.join("sweep.json");
        let Ok(text) = fs::read_to_string(&path) else { return Ok(None) };
        let bad = || format!("{} is not a sweep plan written by regkern sweep", path.display());
        let v: Value = serde_json::from_str(&text).map_err(|_| bad())?;
        let strings = |v: &Value| -> Option<Vec<String>> {
            v.as_array()?.iter().map(|s| s.as_str().map(str::to_string)).collect()
        };
        let runs = v["runs"].as_array().ok_or_else(bad)?;
        let runs = runs
            .iter()
            .map(|r| {
                Some(Run {
                    name: r["name"].as_str()?.to_string(),
                    values: strings(&r["values"])?,
                    args: strings(&r["args"])?,
                })
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(bad)?;
        let switches = v["switches"].as_array().ok_or_else(bad)?;
        Ok(Some(Plan {
            varying: strings(&v["varying"]).ok_or_else(bad)?,
            switches: switches.iter().map(|s| s.as_bool()).collect::<Option<_>>().ok_or_else(bad)?,
            runs,
        }))
    }
}

/// A value as a run name spells it: numbers with a point or exponent in shortest form.
fn name_value(v: &str) -> String {
    let float_like = v.contains(['.', 'e', 'E']);
    match v.parse::<f64>() {
        Ok(x) if float_like && x.is_finite() => x.to_string(),
        _ => v.to_string(),
    }
}

/// `s` as a path component: letters, digits and `. - + = _`, at most [`MAX_NAME_LEN`] bytes.
fn sanitize(s: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "._-+=".contains(c);
    let mut name: String = s.chars().map(|c| if safe(c) { c } else { '-' }).collect();
    name.truncate(MAX_NAME_LEN);
    name
}

/// `base`, or `base-2`, `base-3`, ... : the first not in `taken`, which it joins.
fn unique_name(taken: &mut HashSet<String>, base: String) -> String {
    let mut name = base.clone();
    for n in 2.. {
        if taken.insert(name.clone()) {
            break;
        }
        name = format!("{base}-{n}");
    }
    name
}

// ---------------------------------------------------------------------------------------------
// The sweep directory

/// `sweeps/<YYYYmmdd-HHMMSS>` (UTC), created here; `-2`, `-3`, ... when taken.
fn default_out() -> Result<PathBuf, String> {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let base = PathBuf::from("sweeps").join(utc_stamp(secs));
    fs::create_dir_all("sweeps").map_err(|e| format!("cannot create sweeps/: {e}"))?;
    for n in 1.. {
        let mut dir = base.clone().into_os_string();
        if n > 1 {
            dir.push(format!("-{n}"));
        }
        let dir = PathBuf::from(dir);
        match fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
        }
    }
    unreachable!("the loop returns")
}

/// Make `out` ready for `plan`: refuse a used directory (unless `resume`, which refuses a
/// different plan instead), write `sweep.json`, and delete unfinished runs' directories.
/// Returns which runs are finished.
fn prepare_out(out: &Path, plan: &Plan, resume: bool) -> Result<Vec<bool>, String> {
    let used = fs::read_dir(out).is_ok_and(|mut d| d.next().is_some());
    if used && !resume {
        return Err(format!(
            "{} is not empty; pass --resume to finish the sweep there, use --collect {} for its table, \
             or choose another --out",
            out.display(),
            out.display()
        ));
    }
    if let Some(saved) = Plan::read(out)?
        && let Some(difference) = saved.difference(plan)
    {
        return Err(format!(
            "{} holds another sweep ({difference}); resume it with the same grid and flags, or choose \
             another --out",
            out.display()
        ));
    }
    fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    write_json(&out.join("sweep.json"), &plan.to_json())?;
    let mut finished = Vec::with_capacity(plan.runs.len());
    for run in &plan.runs {
        let dir = out.join(&run.name);
        let done = dir.join("summary.json").is_file();
        if !done && dir.exists() {
            fs::remove_dir_all(&dir)
                .map_err(|e| format!("cannot delete the unfinished {}: {e}", dir.display()))?;
        }
        finished.push(done);
    }
    Ok(finished)
}

fn write_json(path: &Path, v: &Value) -> Result<(), String> {
    write_atomic(
        path,
        format!("{}\n", serde_json::to_string_pretty(v).expect("a Value serialises")).as_bytes(),
    )
}

/// `s` quoted for a POSIX shell when it needs to be.
fn shell_quote(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn command_line<S: AsRef<str>>(argv: &[S]) -> String {
    argv.iter().map(|a| shell_quote(a.as_ref())).collect::<Vec<_>>().join(" ")
}

/// Print a self-contained `train` command line for each unfinished run.
fn emit_commands(args: &SweepArgs, out: &Path, plan: &Plan, finished: &[bool]) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let out = std::path::absolute(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut lines = Vec::new();
    for (run, _) in plan.runs.iter().zip(finished).filter(|(_, done)| !**done) {
        let mut argv = vec![exe.display().to_string(), "train".to_string()];
        argv.extend(run.args.iter().cloned());
        argv.extend([
            "--logdir".to_string(),
            out.join(&run.name).display().to_string(),
            "--quiet".to_string(),
        ]);
        lines.push((run, argv));
    }
    let text = if args.json {
        let runs: Vec<Value> = lines.iter().map(|(r, argv)| json!({"name": r.name, "argv": argv})).collect();
        format!("{}\n", json!({"out": out.display().to_string(), "runs": runs}))
    } else {
        lines.iter().map(|(_, argv)| format!("{}\n", command_line(argv))).collect()
    };
    // Often piped (`| head`, `| parallel`): a reader that stops early is no error.
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
        result => result.map_err(|e| format!("cannot print the commands: {e}"))?,
    }
    if !args.quiet {
        let skipped = finished.iter().filter(|d| **d).count();
        let skipped = if skipped > 0 {
            format!(" ({} skipped)", count(skipped, "finished run"))
        } else {
            String::new()
        };
        eprintln!(
            "{} commands{skipped}; when they are done: regkern sweep --collect {}",
            lines.len(),
            shell_quote(&out.display().to_string())
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Running

/// The numbers of a finished run, from its `summary.json`.
#[derive(Clone, Copy, Debug)]
struct Metrics {
    /// NaN when there was no validation set.
    final_val: f64,
    best_val: f64,
    best_epoch: u64,
    final_train: f64,
    wall: f64,
}

/// How a run ended.
#[derive(Clone, Debug)]
enum Status {
    /// It wrote its summary.
    Done(Metrics),
    /// It exited non-zero (or wrote no summary): the last line of its stderr.
    Failed(String),
}

/// The metrics and the recorded command line (`config.command`) of the run in `dir`.
fn read_summary(dir: &Path) -> Result<(Metrics, Vec<String>), String> {
    let path = dir.join("summary.json");
    let text = fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    // NaN losses are written as null.
    let num = |key: &str| v[key].as_f64().unwrap_or(f64::NAN);
    let metrics = Metrics {
        final_val: num("final_val_loss"),
        best_val: num("best_val_loss"),
        best_epoch: v["best_epoch"].as_u64().unwrap_or(0),
        final_train: num("final_train_loss"),
        wall: num("wall_seconds"),
    };
    let command = v["config"]["command"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    Ok((metrics, command))
}

/// Train `run` in `dir` as a child process, its output captured in `dir`.
fn train_one(exe: &Path, dir: &Path, run: &Run) -> Status {
    let result = (|| {
        fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let log = |name: &str| {
            File::create(dir.join(name))
                .map_err(|e| format!("cannot create {}: {e}", dir.join(name).display()))
        };
        let status = Process::new(exe)
            .arg("train")
            .args(&run.args)
            .arg("--logdir")
            .arg(dir)
            .arg("--quiet")
            .stdin(Stdio::null())
            .stdout(log("stdout.log")?)
            .stderr(log("stderr.log")?)
            .status()
            .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
        if !status.success() {
            let stderr = fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
            let last = stderr.lines().rev().map(str::trim).find(|l| !l.is_empty());
            return Err(match last {
                Some(line) => line.strip_prefix("error: ").unwrap_or(line).to_string(),
                None => format!("train ended with {status}"),
            });
        }
        read_summary(dir).map(|(m, _)| m)
    })();
    match result {
        Ok(m) => Status::Done(m),
        Err(e) => Status::Failed(e),
    }
}

/// What the user sees while runs finish: a bar on a terminal, and (unless quiet) a line per run.
struct Progress {
    bar: ProgressBar,
    /// Print a line per finished run: to stderr with `--json`, else stdout.
    lines: Option<bool>,
    total: usize,
    done: usize,
    best: Option<(f64, String)>,
}

impl Progress {
    fn new(args: &SweepArgs, total: usize, done: usize) -> Self {
        let bar = if args.quiet || !std::io::stderr().is_terminal() {
            ProgressBar::hidden()
        } else {
            ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr_with_hz(10))
        };
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} runs  {elapsed_precise}  {msg}")
                .expect("the template is valid"),
        );
        bar.set_position(done as u64);
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress { bar, lines: (!args.quiet).then_some(args.json), total, done, best: None }
    }

    /// A run ended.
    fn finished(&mut self, run: &Run, status: &Status) {
        self.done += 1;
        self.bar.inc(1);
        let what = match status {
            Status::Done(m) => {
                if m.final_val.is_finite() && self.best.as_ref().is_none_or(|(b, _)| m.final_val < *b) {
                    self.best = Some((m.final_val, run.name.clone()));
                    self.bar.set_message(format!("best val {:.4e} ({})", m.final_val, run.name));
                }
                format!("val {}, {:.1} s", loss(m.final_val), m.wall)
            }
            Status::Failed(msg) => format!("FAILED: {msg}"),
        };
        if let Some(to_stderr) = self.lines {
            let line = format!("[{}/{}] {}: {what}", self.done, self.total, run.name);
            self.bar.suspend(|| if to_stderr { eprintln!("{line}") } else { println!("{line}") });
        }
    }
}

/// Train the unfinished runs `jobs` at a time, then tabulate all of them.
fn sweep(args: &SweepArgs, out: &Path, plan: &Plan, finished: &[bool]) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let todo: Vec<usize> = (0..plan.runs.len()).filter(|&i| !finished[i]).collect();
    let skipped = plan.runs.len() - todo.len();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let jobs = args.jobs.unwrap_or(cores).min(todo.len()).max(1);
    let say = |line: String| {
        if args.json {
            eprintln!("{line}");
        } else if !args.quiet {
            println!("{line}");
        }
    };
    let over =
        if plan.varying.is_empty() { "no varying flag".to_string() } else { plan.varying.join(" × ") };
    say(format!(
        "sweep of {} over {over} in {}, {jobs} at a time",
        count(plan.runs.len(), "run"),
        out.display()
    ));
    if skipped > 0 {
        say(format!("resuming: {} skipped, {} to run", count(skipped, "finished run"), todo.len()));
    }

    let mut statuses: Vec<Option<Status>> = vec![None; plan.runs.len()];
    let mut progress = Progress::new(args, plan.runs.len(), skipped);
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel();
        for _ in 0..jobs {
            let (tx, next, todo, exe) = (tx.clone(), &next, &todo, &exe);
            scope.spawn(move || {
                while let Some(&i) = todo.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let run = &plan.runs[i];
                    let status = train_one(exe, &out.join(&run.name), run);
                    if tx.send((i, status)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        for (i, status) in rx {
            progress.finished(&plan.runs[i], &status);
            statuses[i] = Some(status);
        }
    });
    progress.bar.finish_and_clear();

    let mut rows = Vec::with_capacity(plan.runs.len());
    for ((run, status), &done) in plan.runs.iter().zip(statuses).zip(finished) {
        let dir = out.join(&run.name);
        let status = match status {
            Some(s) => s,
            None if done => read_summary(&dir).map_or_else(Status::Failed, |(m, _)| Status::Done(m)),
            None => Status::Failed("not run".into()),
        };
        rows.push(Row { name: run.name.clone(), values: run.values.clone(), status, args: run.args.clone() });
    }
    let table = Table { varying: plan.varying.clone(), switches: plan.switches.clone(), rows };
    let failures: Vec<&str> = table
        .rows
        .iter()
        .filter_map(|r| match &r.status {
            Status::Failed(m) => Some(m.as_str()),
            Status::Done(_) => None,
        })
        .collect();
    let note = match failures.len() {
        0 => String::new(),
        n => format!("{n} of {} runs failed (see the table and their stderr.log)", plan.runs.len()),
    };
    let mut counts = count(plan.runs.len(), "run");
    if skipped > 0 {
        counts.push_str(&format!(" ({skipped} skipped: finished before)"));
    }
    let error = match failures.as_slice() {
        [] => None,
        [first, rest @ ..] if failures.len() == plan.runs.len() && rest.iter().all(|m| m == first) => {
            Some(format!("every run failed: {first}"))
        }
        _ => Some(note.clone()),
    };
    table.report(args, out, &counts, &note, skipped)?;
    error.map_or(Ok(()), Err)
}

// ---------------------------------------------------------------------------------------------
// Collecting

/// Tabulate the finished runs under `dir`.
fn collect(args: &SweepArgs, dir: &Path) -> Result<(), String> {
    if !dir.is_dir() {
        return Err(format!("--collect: {} is not a directory", dir.display()));
    }
    let mut found = Vec::new();
    find_runs(dir, dir, 0, &mut found)?;
    found.sort();
    if found.is_empty() {
        return Err(format!("--collect: no finished run (summary.json) under {}", dir.display()));
    }
    let train = Flags::train();
    let mut runs = Vec::with_capacity(found.len());
    for name in found {
        let read = read_summary(&dir.join(&name)).and_then(|(metrics, command)| {
            // Everything after the subcommand, less the flags the sweep sets per run.
            let after =
                command.iter().position(|a| a == "train").map_or(&command[..0], |p| &command[p + 1..]);
            let walked = walk(after, &train, None, true).map_err(|e| format!("{name}/summary.json: {e}"))?;
            let given: Vec<(Flag, Option<String>)> =
                walked.train.into_iter().filter(|(f, _)| !SET_BY_SWEEP.contains(&f.long.as_str())).collect();
            Ok((name, metrics, given))
        });
        // A torn or foreign file (copied back halfway, say) costs its row, not the table.
        match read {
            Ok(run) => runs.push(run),
            Err(e) => eprintln!("warning: skipping a run: {e}"),
        }
    }
    if runs.is_empty() {
        return Err(format!("--collect: no readable summary.json under {}", dir.display()));
    }
    let plan = Plan::read(dir)?;
    let (varying, switches) = match &plan {
        Some(p) => (p.varying.clone(), p.switches.clone()),
        None => differing_flags(runs.iter().map(|(_, _, g)| g.as_slice())),
    };
    let rows: Vec<Row> = runs
        .into_iter()
        .map(|(name, metrics, given)| {
            let values =
                varying.iter().zip(&switches).map(|(flag, &switch)| value_of(&given, flag, switch)).collect();
            let args = given
                .into_iter()
                .flat_map(|(f, v)| std::iter::once(format!("--{}", f.long)).chain(v))
                .collect();
            Row { name, values, status: Status::Done(metrics), args }
        })
        .collect();
    let note = match &plan {
        Some(p) if p.runs.len() > rows.len() => {
            format!("{} of the {} planned runs have no summary.json", p.runs.len() - rows.len(), p.runs.len())
        }
        _ => String::new(),
    };
    let counts = count(rows.len(), "finished run");
    Table { varying, switches, rows }.report(args, dir, &counts, &note, 0)
}

/// Collect the directories under `dir` (at most 4 levels down) that hold a `summary.json`, as
/// paths relative to `root`. A run directory's own subdirectories are not searched.
fn find_runs(root: &Path, dir: &Path, depth: usize, found: &mut Vec<String>) -> Result<(), String> {
    let entries = fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        if path.join("summary.json").is_file() {
            let rel = path.strip_prefix(root).unwrap_or(&path);
            found.push(rel.display().to_string());
        } else if depth < 3 {
            find_runs(root, &path, depth + 1, found)?;
        }
    }
    Ok(())
}

/// The value of `flag` among `given`: as written, `true`/`false` for a switch, `-` when absent
/// (the default).
fn value_of(given: &[(Flag, Option<String>)], flag: &str, switch: bool) -> String {
    match given.iter().find(|(f, _)| f.long == flag) {
        Some((_, Some(v))) => v.clone(),
        Some((_, None)) => "true".into(),
        None if switch => "false".into(),
        None => "-".into(),
    }
}

/// The flags whose values differ between runs, in order of first appearance, and which are switches.
fn differing_flags<'a>(
    runs: impl Iterator<Item = &'a [(Flag, Option<String>)]> + Clone,
) -> (Vec<String>, Vec<bool>) {
    let mut flags: Vec<(String, bool)> = Vec::new();
    for given in runs.clone() {
        for (f, _) in given {
            if !flags.iter().any(|(name, _)| *name == f.long) {
                flags.push((f.long.clone(), !f.takes_value));
            }
        }
    }
    flags.retain(|(flag, switch)| {
        let mut values = runs.clone().map(|g| value_of(g, flag, *switch));
        let first = values.next();
        values.any(|v| Some(v) != first)
    });
    flags.into_iter().unzip()
}

// ---------------------------------------------------------------------------------------------
// The results table

/// A run in the results table.
struct Row {
    /// Its directory, relative to the sweep directory.
    name: String,
    /// The values of the varying flags.
    values: Vec<String>,
    status: Status,
    /// Its `train` arguments (no `--logdir`), to repeat it.
    args: Vec<String>,
}

/// The runs of a sweep and the flags that tell them apart.
struct Table {
    varying: Vec<String>,
    switches: Vec<bool>,
    rows: Vec<Row>,
}

/// Sort key: runs with a final validation loss by that loss, then the other finished runs,
/// then failed runs.
fn rank(status: &Status) -> (u8, f64) {
    match status {
        Status::Done(m) if m.final_val.is_finite() => (0, m.final_val),
        Status::Done(_) => (1, 0.0),
        Status::Failed(_) => (2, 0.0),
    }
}

/// A loss for people: 4 significant digits, `-` when there is none.
fn loss(x: f64) -> String {
    if x.is_finite() { format!("{x:.4e}") } else { "-".into() }
}

impl Table {
    /// Sort best first, print the table and the best run (or the JSON object), and write
    /// `results.csv` and `results.md` into `out`. `counts` and `note` end the report.
    fn report(
        mut self,
        args: &SweepArgs,
        out: &Path,
        counts: &str,
        note: &str,
        skipped: usize,
    ) -> Result<(), String> {
        self.rows.sort_by(|a, b| rank(&a.status).partial_cmp(&rank(&b.status)).expect("ranks are finite"));
        let (csv, md) = (out.join("results.csv"), out.join("results.md"));
        write_atomic(&csv, self.csv().as_bytes())?;
        write_atomic(&md, self.markdown().as_bytes())?;
        let program = std::env::args().next().unwrap_or_else(|| "regkern".into());
        let best = self.rows.first().filter(|r| rank(&r.status).0 == 0);
        let repeat = |r: &Row| {
            let mut argv = vec![program.clone(), "train".to_string()];
            argv.extend(r.args.iter().cloned());
            argv
        };
        if args.json {
            let runs: Vec<Value> = self.rows.iter().map(|r| self.row_json(r, out)).collect();
            let failed = self.rows.iter().filter(|r| matches!(r.status, Status::Failed(_))).count();
            let best =
                best.map(|r| json!({"name": r.name, "final_val_loss": rank(&r.status).1, "argv": repeat(r)}));
            let report = json!({
                "out": out.display().to_string(),
                "varying": self.varying,
                "runs": runs,
                "best": best,
                "total": self.rows.len(),
                "failed": failed,
                "skipped": skipped,
                "results_csv": csv.display().to_string(),
                "results_md": md.display().to_string(),
            });
            println!("{report}");
            return Ok(());
        }
        if !args.quiet {
            println!();
        }
        println!("{}", self.console(out));
        match best {
            Some(r) => {
                let flags: Vec<String> = self
                    .varying
                    .iter()
                    .zip(&self.switches)
                    .zip(&r.values)
                    .map(|((flag, &switch), v)| match (switch, v.as_str()) {
                        (true, "true") => format!("--{flag}"),
                        (true, _) => format!("(no --{flag})"),
                        (false, v) => format!("--{flag} {}", shell_quote(v)),
                    })
                    .collect();
                let flags = if flags.is_empty() { r.name.clone() } else { flags.join(" ") };
                println!("best: {flags} (val {})", loss(rank(&r.status).1));
                println!("  {}", command_line(&repeat(r)));
            }
            None => println!("best: no run finished with a validation loss"),
        }
        let note = if note.is_empty() { String::new() } else { format!("; {note}") };
        println!("{counts}{note}; results in {} and {}", csv.display(), md.display());
        Ok(())
    }

    /// Headers and cells of the console and Markdown tables. `dir` prefixes the run names.
    fn cells(&self, dir: Option<&Path>) -> (Vec<String>, Vec<Vec<String>>) {
        let mut head = self.varying.clone();
        head.extend(
            ["final val", "best val (epoch)", "final train", "wall s", "run dir", "status"].map(String::from),
        );
        let body = self
            .rows
            .iter()
            .map(|r| {
                let mut cells = r.values.clone();
                let path = dir.map_or_else(|| r.name.clone(), |d| d.join(&r.name).display().to_string());
                match &r.status {
                    Status::Done(m) => cells.extend([
                        loss(m.final_val),
                        format!("{} ({})", loss(m.best_val), m.best_epoch),
                        loss(m.final_train),
                        format!("{:.2}", m.wall),
                        path,
                        "ok".into(),
                    ]),
                    Status::Failed(msg) => {
                        cells.extend(["-", "-", "-", "-"].map(String::from));
                        cells.extend([path, format!("failed: {msg}")]);
                    }
                }
                cells
            })
            .collect();
        (head, body)
    }

    /// Columns that hold numbers, to right-align.
    fn numeric(&self, col: usize) -> bool {
        (self.varying.len()..self.varying.len() + 4).contains(&col)
    }

    /// The aligned console table.
    fn console(&self, out: &Path) -> String {
        let (head, body) = self.cells(Some(out));
        let mut widths: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
        for row in &body {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let padded: Vec<String> = cells
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    if self.numeric(i) {
                        format!("{c:>w$}", w = widths[i])
                    } else {
                        format!("{c:<w$}", w = widths[i])
                    }
                })
                .collect();
            padded.join("  ").trim_end().to_string()
        };
        let mut text = line(&head);
        for row in &body {
            text.push('\n');
            text.push_str(&line(row));
        }
        text
    }

    /// `results.md`.
    fn markdown(&self) -> String {
        let (head, body) = self.cells(None);
        let esc = |s: &String| s.replace('|', "\\|");
        let line =
            |cells: &[String]| format!("| {} |\n", cells.iter().map(esc).collect::<Vec<_>>().join(" | "));
        let rule: Vec<String> =
            (0..head.len()).map(|i| if self.numeric(i) { "---:".into() } else { "---".into() }).collect();
        let mut text = line(&head);
        text.push_str(&format!("|{}|\n", rule.join("|")));
        body.iter().for_each(|row| text.push_str(&line(row)));
        text
    }

    /// `results.csv`: full-precision numbers, empty when missing.
    fn csv(&self) -> String {
        let mut head = self.varying.clone();
        head.extend(
            [
                "final_val_loss",
                "best_val_loss",
                "best_epoch",
                "final_train_loss",
                "wall_seconds",
                "run_dir",
                "status",
                "error",
            ]
            .map(String::from),
        );
        let num = |x: f64| if x.is_finite() { x.to_string() } else { String::new() };
        let mut text = csv_line(&head);
        for r in &self.rows {
            let mut cells = r.values.clone();
            match &r.status {
                Status::Done(m) => cells.extend([
                    num(m.final_val),
                    num(m.best_val),
                    m.best_epoch.to_string(),
                    num(m.final_train),
                    num(m.wall),
                    r.name.clone(),
                    "ok".into(),
                    String::new(),
                ]),
                Status::Failed(msg) => {
                    cells.extend(["", "", "", "", ""].map(String::from));
                    cells.extend([r.name.clone(), "failed".into(), msg.clone()]);
                }
            }
            text.push_str(&csv_line(&cells));
        }
        text
    }

    /// A row of the `--json` report.
    fn row_json(&self, r: &Row, out: &Path) -> Value {
        let values: serde_json::Map<String, Value> =
            self.varying.iter().zip(&r.values).map(|(f, v)| (f.clone(), json!(v))).collect();
        let num = |x: f64| if x.is_finite() { json!(x) } else { Value::Null };
        let mut v = json!({
            "name": r.name,
            "values": values,
            "run_dir": out.join(&r.name).display().to_string(),
        });
        match &r.status {
            Status::Done(m) => {
                v["status"] = json!("ok");
                v["final_val_loss"] = num(m.final_val);
                v["best_val_loss"] = num(m.best_val);
                v["best_epoch"] = json!(m.best_epoch);
                v["final_train_loss"] = num(m.final_train);
                v["wall_seconds"] = num(m.wall);
            }
            Status::Failed(msg) => {
                v["status"] = json!("failed");
                v["error"] = json!(msg);
            }
        }
        v
    }
}

/// `n` and `what`, plural unless `n` is 1: "1 run", "8 runs".
fn count(n: usize, what: &str) -> String {
    if n == 1 { format!("1 {what}") } else { format!("{n} {what}s") }
}

/// One CSV record (RFC 4180: fields with `,`, `"` or a line break are quoted).
fn csv_line(cells: &[String]) -> String {
    let field = |c: &String| {
        if c.contains([',', '"', '\n', '\r']) { format!("\"{}\"", c.replace('"', "\"\"")) } else { c.clone() }
    };
    format!("{}\n", cells.iter().map(field).collect::<Vec<_>>().join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn axes(cli: &[&str]) -> Result<Vec<Axis>, String> {
        let train = Flags::train();
        let walked = walk(&strings(cli), &train, None, false)?;
        walked.train.into_iter().map(|(f, v)| axis_from_arg(&f, v)).collect()
    }

    #[test]
    fn lists_expand_to_the_cartesian_product_last_flag_fastest() {
        let plan = Plan::new(
            &axes(&["--type", "nlinear", "--lr", "1e-3,3e-3", "--custom-act", "relu,gelu"]).unwrap(),
        )
        .unwrap();
        let names: Vec<&str> = plan.runs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "lr=0.001_custom_act=relu",
                "lr=0.001_custom_act=gelu",
                "lr=0.003_custom_act=relu",
                "lr=0.003_custom_act=gelu"
            ]
        );
        assert_eq!(plan.varying, ["lr", "custom_act"]);
        assert_eq!(
            plan.runs[1].args,
            strings(&["--type", "nlinear", "--lr", "1e-3", "--custom_act", "gelu"])
        );
        assert_eq!(plan.runs[1].values, strings(&["1e-3", "gelu"]));
    }

    #[test]
    fn latent_dims_lists_split_on_semicolon_or_bar_only() {
        let plan = Plan::new(&axes(&["--latent_dims", "128,64;64,32|8"]).unwrap()).unwrap();
        let dims: Vec<&str> = plan.runs.iter().map(|r| r.args[1].as_str()).collect();
        assert_eq!(dims, ["128,64", "64,32", "8"]);
        assert_eq!(plan.runs[0].name, "latent_dims=128-64");
        let one = Plan::new(&axes(&["--latent_dims", "16,8"]).unwrap()).unwrap();
        assert_eq!(one.runs.len(), 1);
        assert_eq!(one.runs[0].name, "run");
    }

    #[test]
    fn switches_pass_through_or_take_true_false_lists() {
        let plan =
            Plan::new(&axes(&["--type", "transformer", "--moe", "true,false", "--use_kv_cache"]).unwrap())
                .unwrap();
        assert_eq!(plan.runs[0].args, strings(&["--type", "transformer", "--moe", "--use_kv_cache"]));
        assert_eq!(plan.runs[1].args, strings(&["--type", "transformer", "--use_kv_cache"]));
        assert_eq!(plan.runs[1].name, "moe=false");
        assert!(axes(&["--moe=maybe"]).unwrap_err().contains("true and false"));
    }

    #[test]
    fn bad_grids_say_what_is_wrong() {
        assert!(axes(&["--lr", "1e-3,"]).unwrap_err().contains("empty value"), "empty list value");
        assert!(axes(&["--lr", "1e-3,1e-3"]).unwrap_err().contains("twice"));
        assert!(axes(&["--lrr", "1"]).unwrap_err().contains("not a flag of `regkern train`"));
        assert!(axes(&["--logdir", "x"]).unwrap_err().contains("the sweep's"));
        assert!(axes(&["--epochs"]).unwrap_err().contains("needs a value"));
        assert!(axes(&["nlinear"]).unwrap_err().contains("unexpected"));
        let plan = Plan::new(&axes(&["--optimizer", "adam,adamw"]).unwrap()).unwrap();
        let err = plan.validate().unwrap_err();
        assert!(err.contains("optimizer=adamw") && err.contains("adamw"), "{err}");
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

    #[test]
    fn clashing_names_get_suffixes() {
        let plan = Plan::new(&axes(&["--lr", "1e-3,0.001"]).unwrap()).unwrap();
        assert_eq!(plan.runs[0].name, "lr=0.001");
        assert_eq!(plan.runs[1].name, "lr=0.001-2");
        assert_eq!(sanitize("data=a b/c;d"), "data=a-b-c-d");
    }

    #[test]
    fn toml_values_become_train_arguments() {
        let train = Flags::train();
        let f = |name: &str| train.get(name).unwrap().clone();
        let t = |s: &str| s.parse::<toml::Table>().unwrap()["v"].clone();
        assert_eq!(toml_value(&f("lr"), &t("v = 1e-3")).unwrap(), "0.001");
        assert_eq!(toml_value(&f("epochs"), &t("v = 20")).unwrap(), "20");
        assert_eq!(toml_value(&f("latent_dims"), &t("v = [128, 64]")).unwrap(), "128,64");
        assert_eq!(toml_value(&f("moe"), &t("v = false")).unwrap(), "false");
        assert!(toml_value(&f("moe"), &t("v = 1")).unwrap_err().contains("switch"));
        assert!(toml_value(&f("lr"), &t("v = true")).unwrap_err().contains("takes a value"));
        assert!(toml_value(&f("lr"), &t("v = [1, 2]")).unwrap_err().contains("[grid]"));
        assert!(toml_value(&f("lr"), &t("v = 1979-05-27")).unwrap_err().contains("datetime"));
    }

    #[test]
    fn quoting_and_csv_escape_what_they_must() {
        assert_eq!(shell_quote("--lr"), "--lr");
        assert_eq!(shell_quote("128,64"), "128,64");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(csv_line(&strings(&["128,64", "say \"hi\"", "x"])), "\"128,64\",\"say \"\"hi\"\"\",x\n");
    }

    #[test]
    fn collect_finds_the_flags_that_differ() {
        let train = Flags::train();
        let given = |argv: &[&str]| walk(&strings(argv), &train, None, true).unwrap().train;
        let a = given(&["--type", "nlinear", "--lr", "1e-3", "--epochs", "2", "--future_flag", "7"]);
        let b = given(&["--type", "nlinear", "--lr", "3e-3", "--epochs", "2", "--moe"]);
        let (varying, switches) = differing_flags([a.as_slice(), b.as_slice()].into_iter());
        assert_eq!(varying, ["lr", "future_flag", "moe"]);
        assert_eq!(switches, [false, false, true]);
        assert_eq!(value_of(&a, "moe", true), "false");
        assert_eq!(value_of(&b, "future_flag", false), "-");
    }
}
