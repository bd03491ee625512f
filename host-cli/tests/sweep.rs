//! `regkern sweep` end to end: a grid runs and is ranked, an interrupted sweep resumes, emitted
//! commands run by hand are collected, a TOML grid names its runs like the command line, and a
//! failing run is reported without stopping the others. Runs are tiny (2 epochs of 64 samples).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime};

/// Flags of a tiny training run, shared by every sweep here.
const TINY: [&str; 10] =
    ["--type", "nlinear", "--epochs", "2", "--train_size", "64", "--val_size", "32", "--latent_dims", "8"];

/// The 8-run grid of the tests.
const GRID: [&str; 6] = ["--lr", "1e-3,3e-3", "--optimizer", "adam,sgd", "--custom_act", "relu,tanh"];

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(what: &str) -> Self {
        let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().subsec_nanos();
        let dir = std::env::temp_dir().join(format!("regkern-sweep-{what}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    /// The sweep directory inside (not created).
    fn out(&self) -> PathBuf {
        self.0.join("out")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `regkern sweep --out OUT <args> <TINY>`, run in `cwd`.
fn sweep(cwd: &Path, out: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_regkern"))
        .arg("sweep")
        .arg("--out")
        .arg(out)
        .args(args)
        .args(TINY)
        .current_dir(cwd)
        .output()
        .expect("regkern runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `results.csv` as its header and rows (the tests' values hold no commas or quotes).
fn results(out: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let csv = std::fs::read_to_string(out.join("results.csv")).expect("results.csv exists");
    assert!(!csv.contains('"'), "unexpected quoting in\n{csv}");
    let mut lines = csv.lines().map(|l| l.split(',').map(str::to_string).collect::<Vec<_>>());
    let header = lines.next().expect("a header");
    (header, lines.collect())
}

fn column(header: &[String], name: &str) -> usize {
    header.iter().position(|h| h == name).unwrap_or_else(|| panic!("no column {name} in {header:?}"))
}

/// The best validation losses of the rows, in table order (the order they are ranked by).
fn val_losses(header: &[String], rows: &[Vec<String>]) -> Vec<f64> {
    let col = column(header, "best_val_loss");
    rows.iter().map(|r| r[col].parse().unwrap_or_else(|_| panic!("bad loss in {r:?}"))).collect()
}

/// Run directories under `out` holding a summary.json.
fn finished(out: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(out) else { return Vec::new() };
    entries.flatten().map(|e| e.path().join("summary.json")).filter(|p| p.is_file()).collect()
}

#[test]
fn a_grid_of_eight_runs_is_ranked_by_validation_loss() {
    let scratch = Scratch::new("grid");
    let out = scratch.out();
    let o = sweep(&scratch.0, &out, &GRID);
    assert!(o.status.success(), "stdout:\n{}\nstderr:\n{}", text(&o.stdout), text(&o.stderr));
    let (header, rows) = results(&out);
    assert_eq!(header[..3], ["lr", "optimizer", "custom_act"]);
    assert_eq!(rows.len(), 8, "{rows:?}");
    let losses = val_losses(&header, &rows);
    assert!(losses.windows(2).all(|w| w[0] <= w[1]), "not ascending: {losses:?}");
    assert!(out.join("results.md").is_file());
    assert_eq!(finished(&out).len(), 8);
    for name in ["stdout.log", "stderr.log", "config.json", "metrics.csv"] {
        assert!(out.join("lr=0.001_optimizer=adam_custom_act=relu").join(name).is_file(), "{name}");
    }

    let stdout = text(&o.stdout);
    let best = format!("best: --lr {} --optimizer {} --custom_act {} ", rows[0][0], rows[0][1], rows[0][2]);
    assert!(stdout.contains(&best), "no {best:?} in\n{stdout}");
    let repeat =
        stdout.lines().skip_while(|l| !l.starts_with("best:")).nth(1).expect("a command after best:");
    for part in [" train ", " --type nlinear ", &format!(" --lr {} ", rows[0][0])] {
        assert!(repeat.contains(part), "no {part:?} in {repeat}");
    }

    let again = sweep(&scratch.0, &out, &GRID);
    assert!(!again.status.success());
    assert!(text(&again.stderr).contains("--resume"), "{}", text(&again.stderr));
}

#[cfg(unix)]
#[test]
fn an_interrupted_sweep_resumes_without_rerunning_finished_runs() {
    use std::os::unix::process::CommandExt;

    let scratch = Scratch::new("resume");
    let out = scratch.out();
    // Runs of ~0.15 s, one at a time, so the sweep is killed midway.
    let slow = ["--jobs", "1", "--epochs", "20", "--train_size", "8192", "--latent_dims", "64,64"];
    let mut child = Command::new(env!("CARGO_BIN_EXE_regkern"))
        .arg("sweep")
        .arg("--out")
        .arg(&out)
        .args(["--type", "nlinear", "--val_size", "32"])
        .args(slow)
        .args(GRID)
        .current_dir(&scratch.0)
        .stdout(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let start = Instant::now();
    while finished(&out).len() < 2 {
        assert!(start.elapsed() < Duration::from_secs(60), "no 2 runs finished in 60 s");
        assert!(child.try_wait().unwrap().is_none(), "the sweep ended before it was interrupted");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Kill the sweep and its running `train` as Ctrl-C would: the whole process group.
    let group = format!("-{}", child.id());
    assert!(Command::new("kill").args(["-KILL", "--", &group]).status().unwrap().success());
    child.wait().unwrap();
    let done: Vec<(PathBuf, String, SystemTime)> = finished(&out)
        .into_iter()
        .map(|p| {
            let (body, mtime) =
                (std::fs::read_to_string(&p).unwrap(), p.metadata().unwrap().modified().unwrap());
            (p, body, mtime)
        })
        .collect();
    assert!((2..8).contains(&done.len()), "{} runs finished before the kill", done.len());

    let o = Command::new(env!("CARGO_BIN_EXE_regkern"))
        .arg("sweep")
        .arg("--out")
        .arg(&out)
        .arg("--resume")
        .args(["--type", "nlinear", "--val_size", "32"])
        .args(slow)
        .args(GRID)
        .current_dir(&scratch.0)
        .output()
        .unwrap();
    let stdout = text(&o.stdout);
    assert!(o.status.success(), "stdout:\n{stdout}\nstderr:\n{}", text(&o.stderr));
    let skipped = format!("{} finished runs skipped, {} to run", done.len(), 8 - done.len());
    assert!(stdout.contains(&skipped), "no {skipped:?} in\n{stdout}");
    for (path, body, mtime) in done {
        assert_eq!(std::fs::read_to_string(&path).unwrap(), body, "{} was rewritten", path.display());
        assert_eq!(path.metadata().unwrap().modified().unwrap(), mtime, "{} was touched", path.display());
    }
    let (header, rows) = results(&out);
    assert_eq!(rows.len(), 8);
    assert!(rows.iter().all(|r| r[column(&header, "status")] == "ok"), "{rows:?}");
}

#[test]
fn emitted_commands_run_by_hand_are_collected() {
    let scratch = Scratch::new("emit");
    let out = scratch.out();
    let o =
        sweep(&scratch.0, &out, &["--emit-commands", GRID[0], GRID[1], GRID[2], GRID[3], GRID[4], GRID[5]]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let stdout = text(&o.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 8, "{stdout}");
    let mut logdirs = Vec::new();
    for line in &lines {
        assert!(line.starts_with(&format!("{} train ", env!("CARGO_BIN_EXE_regkern"))), "{line}");
        assert!(!line.contains('\''), "no quoting expected in {line}");
        let words: Vec<&str> = line.split_whitespace().collect();
        let at = words.iter().position(|w| *w == "--logdir").expect("a --logdir");
        logdirs.push(words[at + 1].to_string());
    }
    logdirs.sort();
    logdirs.dedup();
    assert_eq!(logdirs.len(), 8, "{logdirs:?}");
    assert!(finished(&out).is_empty(), "emitting ran something");

    for line in &lines[..2] {
        let words: Vec<&str> = line.split_whitespace().collect();
        let run = Command::new(words[0]).args(&words[1..]).output().unwrap();
        assert!(run.status.success(), "{line}: {}", text(&run.stderr));
    }
    let o =
        Command::new(env!("CARGO_BIN_EXE_regkern")).arg("sweep").arg("--collect").arg(&out).output().unwrap();
    let stdout = text(&o.stdout);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(stdout.contains("6 of the 8 planned runs have no summary.json"), "{stdout}");
    let (header, rows) = results(&out);
    assert_eq!(header[..3], ["lr", "optimizer", "custom_act"]);
    assert_eq!(rows.len(), 2, "{rows:?}");
    let losses = val_losses(&header, &rows);
    assert!(losses[0] <= losses[1], "{losses:?}");
}

#[test]
fn a_toml_grid_names_its_runs_like_the_command_line() {
    let scratch = Scratch::new("toml");
    let grid = scratch.0.join("grid.toml");
    std::fs::write(
        &grid,
        "[fixed]\nepochs = 2\n\n[grid]\nlr = [1e-3, 3e-3]\noptimizer = [\"adam\", \"sgd\"]\n\
         custom_act = [\"relu\", \"tanh\"]\n",
    )
    .unwrap();
    // TINY repeats --epochs, so the file's `epochs` is left to it here: a flag given twice is refused.
    let o =
        sweep(&scratch.0, &scratch.0.join("toml"), &["--emit-commands", "--grid", grid.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("--epochs is given twice"), "{}", text(&o.stderr));

    std::fs::write(
        &grid,
        "[grid]\nlr = [1e-3, 3e-3]\noptimizer = [\"adam\", \"sgd\"]\ncustom_act = [\"relu\", \"tanh\"]\n",
    )
    .unwrap();
    let names = |dir: &str, args: &[&str]| -> Vec<String> {
        let o = sweep(&scratch.0, &scratch.0.join(dir), args);
        assert!(o.status.success(), "{}", text(&o.stderr));
        let plan: serde_json::Value =
            serde_json::from_slice(&std::fs::read(scratch.0.join(dir).join("sweep.json")).unwrap()).unwrap();
        plan["runs"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap().to_string()).collect()
    };
    let from_toml = names("toml", &["--emit-commands", "--grid", grid.to_str().unwrap()]);
    let mut cli = vec!["--emit-commands"];
    cli.extend(GRID);
    let from_cli = names("cli", &cli);
    assert_eq!(from_toml.len(), 8);
    assert_eq!(from_toml, from_cli);
    assert_eq!(from_cli[0], "lr=0.001_optimizer=adam_custom_act=relu");
}

#[test]
fn a_failing_run_is_reported_and_the_others_finish() {
    let scratch = Scratch::new("fail");
    let out = scratch.out();
    let o = sweep(&scratch.0, &out, &["--lr", "-1,1e-3", "--custom_act", "relu,tanh"]);
    let (stdout, stderr) = (text(&o.stdout), text(&o.stderr));
    assert!(!o.status.success(), "a failed run must fail the sweep:\n{stdout}");
    assert!(stderr.contains("2 of 4 runs failed"), "{stderr}");
    assert!(stdout.contains("failed: invalid config: lr must be a positive finite number"), "{stdout}");
    let (header, rows) = results(&out);
    let status = column(&header, "status");
    let statuses: Vec<&str> = rows.iter().map(|r| r[status].as_str()).collect();
    assert_eq!(statuses, ["ok", "ok", "failed", "failed"], "failed runs go last");
    assert!(rows[..2].iter().all(|r| r[0] == "1e-3") && rows[2..].iter().all(|r| r[0] == "-1"), "{rows:?}");
    assert!(rows[2][column(&header, "error")].contains("lr must be"), "{rows:?}");
}

#[test]
fn json_reports_runs_best_first_and_bad_grids_fail_before_any_run() {
    let scratch = Scratch::new("json");
    let out = scratch.out();
    let o = sweep(&scratch.0, &out, &["--json", "--seed", "1,2"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("stdout is one JSON object");
    assert_eq!(v["varying"], serde_json::json!(["seed"]));
    assert_eq!((v["total"].as_u64(), v["failed"].as_u64()), (Some(2), Some(0)));
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(v["best"]["name"], runs[0]["name"]);
    assert!(runs[0]["best_val_loss"].as_f64() <= runs[1]["best_val_loss"].as_f64(), "{runs:?}");
    assert!(runs.iter().all(|r| r["final_val_loss"].as_f64().is_some()), "final losses shown too");

    let bad = scratch.0.join("bad");
    let o = sweep(&scratch.0, &bad, &["--optimizer", "adam,adamw"]);
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("optimizer=adamw"), "{}", text(&o.stderr));
    assert!(!bad.exists(), "a rejected grid created its directory");
    let o = sweep(&scratch.0, &bad, &["--lr", "1e-3,"]);
    assert!(text(&o.stderr).contains("empty value"), "{}", text(&o.stderr));
}

#[test]
fn runs_share_the_memory_limit() {
    let scratch = Scratch::new("memory");
    let out = scratch.out();
    let o = sweep(&scratch.0, &out, &["--max_memory", "64M", "--jobs", "2", "--lr", "1e-3,3e-3"]);
    assert!(o.status.success(), "stdout:\n{}\nstderr:\n{}", text(&o.stdout), text(&o.stderr));
    assert_eq!(finished(&out).len(), 2);
    for run in finished(&out) {
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(run.with_file_name("config.json")).unwrap())
                .unwrap();
        let command: Vec<&str> =
            config["command"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
        let at = command.iter().position(|&a| a == "--max_memory").expect("the sweep passes --max_memory");
        assert_eq!(command[at + 1], "33554432", "each of 2 jobs gets 32 MiB: {command:?}");
    }
    // A run whose arena exceeds its share fails with the limit named; the sweep reports it.
    let tight = scratch.0.join("tight");
    let o = sweep(&scratch.0, &tight, &["--max_memory", "4K", "--jobs", "2", "--lr", "1e-3,3e-3"]);
    assert!(!o.status.success());
    let all = text(&o.stdout) + &text(&o.stderr);
    assert!(all.contains("--max_memory"), "{all}");
}
