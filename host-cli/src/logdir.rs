//! The run directory of `regkern train` (`--logdir`, default `runs/<type>-<UTC timestamp>`):
//!
//! | file | written |
//! |---|---|
//! | `config.json` | at the start: the resolved config and the command line |
//! | `metrics.csv` | a row per epoch: epoch, step, train/val loss, lr, mean gradient norm (MoE: drop rate, aux loss) |
//! | `events.out.tfevents.*` | TensorBoard: the same scalars per epoch, per-step loss/lr/gradient norm, prediction images |
//! | `predictions/epoch_NNNN.{png,svg}` | every few epochs and at the end: predictions against targets |
//! | `checkpoint.safetensors` | after every epoch: parameters, optimizer state and progress (for `--resume`) |
//! | `best.safetensors` | when the validation loss improves: the parameters |
//! | `model.safetensors` | at the end of a successful run: the parameters |
//! | `summary.json` | at the end of a successful run: what `--json` prints |
//!
//! Files are replaced atomically (written beside, then renamed), so an interrupted or diverged
//! run never leaves a torn or overwritten checkpoint: a non-finite loss stops training before
//! anything is saved from that epoch.
//!
//! The training checkpoint is the run's commit point: each epoch writes its metrics row, events,
//! plots and best model first and the checkpoint last, and `--resume` cuts `metrics.csv` back to
//! the checkpoint's epoch and re-runs what follows, which (training being deterministic)
//! writes the same rows and files again. So a run killed at any moment and resumed ends with the
//! metrics, checkpoints and summary of an uninterrupted run. A run killed after its last
//! checkpoint but before its summary is finished by `--resume`; one that stopped before its
//! first checkpoint (killed, or diverged in epoch 1) is simply started again, by a rerun or a
//! resume. Temporary files of an interrupted write are removed when the directory is reopened.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// An open run directory.
#[derive(Debug)]
pub struct RunDir {
    dir: PathBuf,
    metrics: BufWriter<File>,
    moe: bool,
}

impl RunDir {
    /// Create (or, when resuming, reopen) `dir`. A new run refuses a directory that already
    /// holds a run that saved something ([`holds_progress`]), so nothing is overwritten by
    /// accident; one that stopped before its first checkpoint is started again in place (its
    /// event files go). Leftover temporary files are removed either way.
    pub fn open(dir: &Path, resume: bool, moe: bool) -> Result<Self, String> {
        let metrics_path = dir.join("metrics.csv");
        if !resume && holds_progress(dir) {
            return Err(format!(
                "{} already holds a run; pass another --logdir, or --resume to continue it",
                dir.display()
            ));
        }
        fs::create_dir_all(dir.join("predictions"))
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        remove_temporaries(dir)?;
        if !resume {
            remove_events(dir)?;
        }
        let fresh = !resume || !metrics_path.exists();
        let file = OpenOptions::new()
            .create(true)
            .append(!fresh)
            .write(true)
            .truncate(fresh)
            .open(&metrics_path)
            .map_err(|e| format!("cannot write {}: {e}", metrics_path.display()))?;
        let mut metrics = BufWriter::new(file);
        if fresh {
            let moe_cols = if moe { ",drop_rate,aux_loss" } else { "" };
            writeln!(metrics, "epoch,step,train_loss,val_loss,lr,grad_norm{moe_cols}")
                .map_err(io_err(&metrics_path))?;
        }
        Ok(RunDir { dir: dir.to_path_buf(), metrics, moe })
    }

    /// Append one epoch's row to `metrics.csv` (flushed, so a killed run keeps its rows).
    pub fn metrics_row(&mut self, row: &MetricsRow) -> Result<(), String> {
        let val = row.val_loss.map_or_else(String::new, |v| v.to_string());
        let mut line =
            format!("{},{},{},{val},{},{}", row.epoch, row.step, row.train_loss, row.lr, row.grad_norm);
        if self.moe {
            let (drop, aux) = row.moe.unwrap_or((f32::NAN, f32::NAN));
            line += &format!(",{drop},{aux}");
        }
        let path = self.dir.join("metrics.csv");
        writeln!(self.metrics, "{line}").and_then(|()| self.metrics.flush()).map_err(io_err(&path))
    }

    /// Replace `name` in the run directory with `bytes`, atomically.
    pub fn write_atomic(&self, name: &str, bytes: &[u8]) -> Result<(), String> {
        write_atomic(&self.dir.join(name), bytes)
    }

    /// Write `name` as pretty-printed JSON, atomically.
    pub fn write_json(&self, name: &str, value: &serde_json::Value) -> Result<(), String> {
        let text = serde_json::to_string_pretty(value).expect("a Value always serialises");
        self.write_atomic(name, format!("{text}\n").as_bytes())
    }
}

/// One row of `metrics.csv`.
pub struct MetricsRow {
    /// 1-based epoch.
    pub epoch: usize,
    /// Optimizer steps so far.
    pub step: u64,
    /// Mean training MSE of the epoch.
    pub train_loss: f32,
    /// Validation MSE after it.
    pub val_loss: Option<f32>,
    /// Learning rate of its last step.
    pub lr: f32,
    /// Mean global gradient norm (before clipping) over its steps.
    pub grad_norm: f32,
    /// MoE: drop rate and mean load-balancing loss.
    pub moe: Option<(f32, f32)>,
}

/// Whether `dir` holds a run that got somewhere: a training checkpoint or a summary.
pub fn holds_progress(dir: &Path) -> bool {
    dir.join("checkpoint.safetensors").exists() || dir.join("summary.json").exists()
}

/// Remove `*.tmp` files (of writes a killed run left unfinished) from `dir` and its
/// `predictions/`.
fn remove_temporaries(dir: &Path) -> Result<(), String> {
    remove_matching(dir, |name| name.ends_with(".tmp"))?;
    remove_matching(&dir.join("predictions"), |name| name.ends_with(".tmp"))
}

/// Remove the TensorBoard event files of an attempt that saved no checkpoint.
fn remove_events(dir: &Path) -> Result<(), String> {
    remove_matching(dir, |name| name.starts_with("events.out.tfevents."))
}

fn remove_matching(dir: &Path, matches: impl Fn(&str) -> bool) -> Result<(), String> {
    let Ok(entries) = fs::read_dir(dir) else { return Ok(()) };
    for entry in entries.flatten() {
        if entry.file_name().to_str().is_some_and(&matches) {
            let path = entry.path();
            fs::remove_file(&path).map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
        }
    }
    Ok(())
}

/// A metrics row's losses: train, validation, and the MoE statistics (drop rate, aux loss).
pub type RowLosses = (f32, Option<f32>, Option<(f32, f32)>);

/// What [`truncate_metrics`] kept: the lowest validation loss with its epoch, and the last row.
#[derive(Debug, Default)]
pub struct Kept {
    /// Lowest validation loss among the kept rows, and its 1-based epoch.
    pub best: Option<(f32, usize)>,
    /// The last kept row's train loss, validation loss and MoE statistics (drop rate, aux loss).
    pub last: Option<RowLosses>,
}

/// Keep the rows of `dir/metrics.csv` up to `epochs` (a resumed run continues from its last
/// checkpoint; rows logged after it, and any torn row, are dropped).
pub fn truncate_metrics(dir: &Path, epochs: usize) -> Result<Kept, String> {
    let path = dir.join("metrics.csv");
    let text = fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let width = header.split(',').count();
    let mut kept = format!("{header}\n");
    let mut out = Kept::default();
    for line in lines {
        let cells: Vec<&str> = line.split(',').collect();
        let Some(epoch) = cells.first().and_then(|c| c.parse::<usize>().ok()) else { continue };
        if epoch > epochs || cells.len() != width || !line_is_whole(&text, line) {
            continue;
        }
        let num = |i: usize| cells.get(i).and_then(|c| c.parse::<f32>().ok());
        let val = num(3);
        if let Some(v) = val
            && out.best.is_none_or(|(b, _)| v < b)
        {
            out.best = Some((v, epoch));
        }
        let moe = (width > 6).then(|| (num(6).unwrap_or(f32::NAN), num(7).unwrap_or(f32::NAN)));
        out.last = Some((num(2).unwrap_or(f32::NAN), val, moe));
        kept.push_str(line);
        kept.push('\n');
    }
    write_atomic(&path, kept.as_bytes())?;
    Ok(out)
}

/// Whether `line` (a slice of `text`) ends with a newline: the last row of a killed write may not.
fn line_is_whole(text: &str, line: &str) -> bool {
    let end = line.as_ptr() as usize - text.as_ptr() as usize + line.len();
    text[end..].starts_with('\n') || text[end..].starts_with("\r\n")
}

/// Replace `path` with `bytes`: write `path.tmp`, then rename it over `path`, so a reader (or a
/// run killed midway) sees the old file or the new one, never a torn one. Not synced to disk:
/// per-epoch syncs would cost more than small epochs do.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        drop(f);
        fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        // A full disk (or any failure) leaves nothing behind but the old file.
        let _ = fs::remove_file(&tmp);
        format!("cannot write {}: {e}", path.display())
    })
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> String + '_ {
    move |e| format!("cannot write {}: {e}", path.display())
}

/// `runs/<type>-<YYYYmmdd-HHMMSS>` (UTC), the default `--logdir`, created here; runs started in
/// the same second get `-2`, `-3`, ... (claimed with an atomic `create_dir`, so parallel runs
/// never share one).
pub fn default_dir(type_name: &str) -> Result<PathBuf, String> {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let base = format!("{type_name}-{}", utc_stamp(secs));
    fs::create_dir_all("runs").map_err(|e| format!("cannot create runs/: {e}"))?;
    for n in 1.. {
        let dir = PathBuf::from("runs").join(if n == 1 { base.clone() } else { format!("{base}-{n}") });
        match fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
        }
    }
    unreachable!("the loop returns")
}

/// `YYYYmmdd-HHMMSS` of a Unix time, UTC (Howard Hinnant's civil-from-days).
pub fn utc_stamp(secs: u64) -> String {
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}{month:02}{day:02}-{:02}{:02}{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamps() {
        assert_eq!(utc_stamp(0), "19700101-000000");
        assert_eq!(utc_stamp(951_782_400), "20000229-000000");
        assert_eq!(utc_stamp(1_795_779_045), "20261127-113045");
    }

    #[test]
    fn a_new_run_refuses_an_existing_run_and_resume_appends() {
        let dir = std::env::temp_dir().join(format!("regkern-logdir-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let row = |epoch| MetricsRow {
            epoch,
            step: 10 * epoch as u64,
            train_loss: 0.5,
            val_loss: Some(0.25),
            lr: 1e-3,
            grad_norm: 2.0,
            moe: None,
        };
        let mut run = RunDir::open(&dir, false, false).unwrap();
        run.write_json("config.json", &serde_json::json!({"a": 1})).unwrap();
        run.metrics_row(&row(1)).unwrap();
        drop(run);
        // Without a checkpoint the run saved nothing, and may start again in place...
        drop(RunDir::open(&dir, false, false).unwrap());
        let mut run = RunDir::open(&dir, false, false).unwrap();
        run.metrics_row(&row(1)).unwrap();
        run.write_atomic("checkpoint.safetensors", b"saved").unwrap();
        drop(run);
        // ...but not once it has one.
        assert!(RunDir::open(&dir, false, false).unwrap_err().contains("already holds a run"));
        let mut run = RunDir::open(&dir, true, false).unwrap();
        run.metrics_row(&row(2)).unwrap();
        let csv = fs::read_to_string(dir.join("metrics.csv")).unwrap();
        assert_eq!(
            csv,
            "epoch,step,train_loss,val_loss,lr,grad_norm\n1,10,0.5,0.25,0.001,2\n2,20,0.5,0.25,0.001,2\n"
        );
        run.write_atomic("x.bin", b"one").unwrap();
        run.write_atomic("x.bin", b"two").unwrap();
        assert_eq!(fs::read(dir.join("x.bin")).unwrap(), b"two");
        assert!(!dir.join("x.bin.tmp").exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn failed_writes_leave_no_temporaries_and_torn_rows_are_dropped() {
        let dir = std::env::temp_dir().join(format!("regkern-logdir-faults-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("busy/inside")).unwrap();
        // The rename fails (a non-empty directory is in the way), as a full disk fails the write.
        assert!(write_atomic(&dir.join("busy"), b"x").unwrap_err().contains("cannot write"));
        assert!(!dir.join("busy.tmp").exists());
        // A killed append can leave half a row: resuming drops it, and rows after the checkpoint.
        let header = "epoch,step,train_loss,val_loss,lr,grad_norm\n";
        fs::write(
            dir.join("metrics.csv"),
            format!("{header}1,4,0.5,0.4,0.001,1\n2,8,0.3,0.2,0.001,1\n3,12,0.2"),
        )
        .unwrap();
        let kept = truncate_metrics(&dir, 3).unwrap();
        assert_eq!((kept.best, kept.last), (Some((0.2, 2)), Some((0.3, Some(0.2), None))));
        let csv = fs::read_to_string(dir.join("metrics.csv")).unwrap();
        assert_eq!(csv, format!("{header}1,4,0.5,0.4,0.001,1\n2,8,0.3,0.2,0.001,1\n"));
        assert_eq!(truncate_metrics(&dir, 1).unwrap().best, Some((0.4, 1)));
        // Reopening removes what an interrupted write left.
        fs::write(dir.join("checkpoint.safetensors.tmp"), b"half").unwrap();
        drop(RunDir::open(&dir, true, false).unwrap());
        assert!(!dir.join("checkpoint.safetensors.tmp").exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}
