//! Faults: a run killed (SIGKILL) at random moments and resumed each time (`--logdir DIR --resume`
//! alone) ends with the metrics, checkpoints and summary of an uninterrupted run, cosine schedule
//! included; closed standard streams do not stop one.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("regkern-faults-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A small run with a checkpoint per epoch and a plot every five (40 epochs in well under a
/// second), quiet, with `extra` flags.
fn train_with(dir: &Path, resume: bool, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_regkern"));
    c.args([
        "train",
        "--type",
        "nlinear",
        "--latent_dims",
        "16,8",
        "--train_size",
        "256",
        "--val_size",
        "64",
    ]);
    c.args(["--plot_every", "5", "--logdir"]).arg(dir).args(extra);
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    if resume {
        c.arg("--resume");
    }
    c
}

/// The run every fault test makes: 40 epochs under a cosine schedule. Resumed, it is given only
/// its run directory (its flags come from config.json), unless it was killed before writing one.
fn train(dir: &Path, resume: bool) -> Command {
    if resume && dir.join("config.json").exists() {
        let mut c = Command::new(env!("CARGO_BIN_EXE_regkern"));
        c.args(["train", "--logdir"]).arg(dir).args(["--resume", "--quiet"]);
        c.stdout(Stdio::null()).stderr(Stdio::piped());
        return c;
    }
    train_with(dir, resume, &["--epochs", "40", "--scheduler", "cosine", "--lr", "3e-3", "--quiet"])
}

/// Every file a run leaves, relative to its directory, except TensorBoard's events (a resumed
/// run appends a new events file), config.json (it records the command line) and summary.json
/// (timings and paths; [`outcome`] compares the rest).
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for sub in ["", "predictions"] {
        for e in std::fs::read_dir(dir.join(sub)).unwrap().flatten() {
            let name = format!("{sub}/{}", e.file_name().to_string_lossy());
            if e.path().is_file()
                && !name.contains("events.out.tfevents")
                && !name.ends_with("config.json")
                && !name.ends_with("summary.json")
            {
                out.push((name, std::fs::read(e.path()).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// summary.json's losses and counts (not its timings or paths).
fn outcome(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("summary.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    ["final_train_loss", "final_val_loss", "best_val_loss", "best_epoch", "epochs", "steps"]
        .iter()
        .map(|k| format!("{k}={}", v[k]))
        .collect()
}

#[test]
fn runs_killed_at_random_moments_resume_to_the_uninterrupted_result() {
    let base = scratch("kill");
    let whole = base.join("whole");
    let start = Instant::now();
    let o = train(&whole, false).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let span = start.elapsed();
    let (want_files, want_outcome) = (files(&whole), outcome(&whole));
    // A fixed LCG: moments spread over the whole run, the same on every machine relative to its speed.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut moment = || {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        span.mul_f64((state >> 11) as f64 / (1u64 << 53) as f64 * 1.2)
    };
    let (mut kills, mut runs) = (0, 0);
    while kills < 20 {
        runs += 1;
        let dir = base.join(format!("cut-{runs}"));
        let mut resume = false;
        loop {
            let mut child = train(&dir, resume).spawn().unwrap();
            std::thread::sleep(moment());
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                kills += 1;
                resume = true;
                continue;
            }
            let o = child.wait_with_output().unwrap();
            assert!(
                o.status.success(),
                "run {runs} after {kills} kills: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            break;
        }
        assert_eq!(outcome(&dir), want_outcome, "run {runs}");
        let got = files(&dir);
        let names = |f: &[(String, Vec<u8>)]| f.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        assert_eq!(names(&got), names(&want_files), "run {runs}: the same files, and no *.tmp left");
        for ((name, a), (_, b)) in got.iter().zip(&want_files) {
            assert!(a == b, "run {runs}: {name} differs from the uninterrupted run's");
        }
        assert!(runs < 200, "only {kills} kills landed in {runs} runs");
    }
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn a_run_that_saved_nothing_can_be_rerun_or_resumed_in_place() {
    let base = scratch("rerun");
    // Diverges in its first epoch: nothing is saved, and the same command may be run again.
    let diverging = |dir: &Path, resume: bool| {
        train_with(dir, resume, &["--epochs", "40", "--lr", "1e30"]).output().unwrap()
    };
    let dir = base.join("run");
    for resume in [false, false, true] {
        let o = diverging(&dir, resume);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains("non-finite") && !err.contains("already holds"), "{err}");
    }
    // A good run then takes the directory over, and a finished run is still protected.
    assert!(train(&dir, false).output().unwrap().status.success());
    let again = train(&dir, false).output().unwrap();
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds a run"));
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn a_closed_standard_output_does_not_stop_a_run() {
    let dir = scratch("stdout").join("run");
    let mut c = train_with(&dir, false, &["--epochs", "3", "--log_every", "1"]);
    let mut child = c.stdout(Stdio::piped()).spawn().unwrap();
    drop(child.stdout.take()); // the reader goes away, as `| head -0` would
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && !err.contains("panicked"), "{err}");
    assert!(dir.join("summary.json").exists());
    std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
}

/// Both standard streams closed (`regkern ... 2>&- | true`): a run still finishes, and an error
/// still exits with status 1 — a panic would exit with 101.
#[test]
fn closed_standard_streams_never_panic() {
    let dir = scratch("streams").join("run");
    let closed = |mut c: Command| {
        let mut child = c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        drop((child.stdout.take(), child.stderr.take()));
        child.wait().unwrap().code()
    };
    // Progress lines go to stderr with --json, the summary to stdout.
    assert_eq!(closed(train_with(&dir, false, &["--epochs", "2", "--log_every", "1", "--json"])), Some(0));
    assert!(dir.join("summary.json").exists());
    let mut bad = Command::new(env!("CARGO_BIN_EXE_regkern"));
    bad.args(["predict", "--checkpoint"]).arg(dir.join("missing.safetensors")).args(["--input", "x.csv"]);
    assert_eq!(closed(bad), Some(1));
    std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
}
