//! Carrying out a plan: here, by training the unfinished runs as child processes of this binary,
//! `--jobs` at a time, with a progress bar and a line per finished run, then tabulating them; or
//! elsewhere, by printing one self-contained `train` command line per run (`--emit-commands`).
//! Also how a finished run's numbers are read back from its `summary.json`.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use std::process::{Command as Process, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use indicatif::ProgressBar;
use serde_json::{Value, json};

use super::SweepArgs;
use super::plan::{Plan, Run};
use super::table::{Row, Table, command_line, count, loss, shell_quote};

/// Print a self-contained `train` command line for each unfinished run.
pub(super) fn emit_commands(
    args: &SweepArgs,
    out: &Path,
    plan: &Plan,
    finished: &[bool],
) -> Result<(), String> {
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
        errln!(
            "{} commands{skipped}; when they are done: regkern sweep --collect {}",
            lines.len(),
            shell_quote(&out.display().to_string())
        );
    }
    Ok(())
}

/// The numbers of a finished run, from its `summary.json`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Metrics {
    /// NaN when there was no validation set.
    pub(super) final_val: f64,
    pub(super) best_val: f64,
    pub(super) best_epoch: u64,
    pub(super) final_train: f64,
    pub(super) wall: f64,
}

/// How a run ended.
#[derive(Clone, Debug)]
pub(super) enum Status {
    /// It wrote its summary.
    Done(Metrics),
    /// It exited non-zero (or wrote no summary): the last line of its stderr.
    Failed(String),
}

/// The metrics and the recorded command line (`config.command`) of the run in `dir`.
pub(super) fn read_summary(dir: &Path) -> Result<(Metrics, Vec<String>), String> {
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

/// Train `run` in `dir` as a child process, its output captured in `dir`, allowed `max_memory`
/// bytes (unless the run's own flags set `--max_memory`).
fn train_one(exe: &Path, dir: &Path, run: &Run, max_memory: u64) -> Status {
    let result = (|| {
        fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let log = |name: &str| {
            File::create(dir.join(name))
                .map_err(|e| format!("cannot create {}: {e}", dir.join(name).display()))
        };
        let mut cmd = Process::new(exe);
        cmd.arg("train").args(&run.args);
        if !run.args.iter().any(|a| a.starts_with("--max_memory") || a.starts_with("--max-memory")) {
            cmd.arg("--max_memory").arg(max_memory.to_string());
        }
        if !run.args.iter().any(|a| a.starts_with("--threads")) {
            cmd.arg("--threads").arg(crate::threads().to_string());
        }
        let status = cmd
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
        let bar = crate::progress_bar(
            total as u64,
            args.quiet,
            "{bar:30} {pos}/{len} runs  {elapsed_precise}  {msg}",
        );
        bar.set_position(done as u64);
        Progress { bar, lines: (!args.quiet).then_some(args.json), total, done, best: None }
    }

    /// A run ended.
    fn finished(&mut self, run: &Run, status: &Status) {
        self.done += 1;
        self.bar.inc(1);
        let what = match status {
            Status::Done(m) => {
                if m.best_val.is_finite() && self.best.as_ref().is_none_or(|(b, _)| m.best_val < *b) {
                    self.best = Some((m.best_val, run.name.clone()));
                    self.bar.set_message(format!("best val {:.4e} ({})", m.best_val, run.name));
                }
                format!("best val {}, final {}, {:.1} s", loss(m.best_val), loss(m.final_val), m.wall)
            }
            Status::Failed(msg) => format!("FAILED: {msg}"),
        };
        if let Some(to_stderr) = self.lines {
            let line = format!("[{}/{}] {}: {what}", self.done, self.total, run.name);
            self.bar.suspend(|| if to_stderr { errln!("{line}") } else { outln!("{line}") });
        }
    }
}

/// Train the unfinished runs `jobs` at a time, then tabulate all of them.
pub(super) fn sweep(args: &SweepArgs, out: &Path, plan: &Plan, finished: &[bool]) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let todo: Vec<usize> = (0..plan.runs.len()).filter(|&i| !finished[i]).collect();
    let skipped = plan.runs.len() - todo.len();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // By default jobs × threads stays within the cores.
    let jobs = args.jobs.unwrap_or((cores / crate::threads()).max(1)).min(todo.len()).max(1);
    let say = |line: String| {
        if args.json {
            errln!("{line}");
        } else if !args.quiet {
            outln!("{line}");
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
    // Runs share the memory limit: `jobs` of them at a time must fit together.
    let share = (crate::mem::limit() / jobs as u64).max(1);
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel();
        for _ in 0..jobs {
            let (tx, next, todo, exe) = (tx.clone(), &next, &todo, &exe);
            scope.spawn(move || {
                while let Some(&i) = todo.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let run = &plan.runs[i];
                    let status = train_one(exe, &out.join(&run.name), run, share);
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
