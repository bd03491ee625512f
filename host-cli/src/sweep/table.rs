//! The results table: one [`Row`] per run, sorted best first by best validation loss, printed
//! to the console (or as one `--json` object) with the best run's repeat command, and written as
//! `results.csv` and `results.md`. Also the text helpers the sweep prints with: counts, losses,
//! CSV records and POSIX shell quoting.

use std::path::Path;

use serde_json::{Value, json};

use super::SweepArgs;
use super::runner::Status;
use crate::logdir::write_atomic;

/// A run in the results table.
pub(super) struct Row {
    /// Its directory, relative to the sweep directory.
    pub(super) name: String,
    /// The values of the varying flags.
    pub(super) values: Vec<String>,
    pub(super) status: Status,
    /// Its `train` arguments (no `--logdir`), to repeat it.
    pub(super) args: Vec<String>,
}

/// The runs of a sweep and the flags that tell them apart.
pub(super) struct Table {
    pub(super) varying: Vec<String>,
    pub(super) switches: Vec<bool>,
    pub(super) rows: Vec<Row>,
}

/// Sort key: runs with a validation loss by the best they reached (the checkpoint a user would
/// keep), then the other finished runs, then failed runs.
fn rank(status: &Status) -> (u8, f64) {
    match status {
        Status::Done(m) if m.best_val.is_finite() => (0, m.best_val),
        Status::Done(_) => (1, 0.0),
        Status::Failed(_) => (2, 0.0),
    }
}

/// A loss for people: 4 significant digits, `-` when there is none.
pub(super) fn loss(x: f64) -> String {
    if x.is_finite() { format!("{x:.4e}") } else { "-".into() }
}

impl Table {
    /// Sort best first, print the table and the best run (or the JSON object), and write
    /// `results.csv` and `results.md` into `out`. `counts` and `note` end the report.
    pub(super) fn report(
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
                best.map(|r| json!({"name": r.name, "best_val_loss": rank(&r.status).1, "argv": repeat(r)}));
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
            outln!("{report}");
            return Ok(());
        }
        if !args.quiet {
            outln!();
        }
        outln!("{}", self.console(out));
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
                outln!("best: {flags} (best val {})", loss(rank(&r.status).1));
                outln!("  {}", command_line(&repeat(r)));
            }
            None => outln!("best: no run finished with a validation loss"),
        }
        let note = if note.is_empty() { String::new() } else { format!("; {note}") };
        outln!("{counts}{note}; results in {} and {}", csv.display(), md.display());
        Ok(())
    }

    /// Headers and cells of the console and Markdown tables. `dir` prefixes the run names.
    fn cells(&self, dir: Option<&Path>) -> (Vec<String>, Vec<Vec<String>>) {
        let mut head = self.varying.clone();
        head.extend(
            ["best val (epoch)", "final val", "final train", "wall s", "run dir", "status"].map(String::from),
        );
        let body = self
            .rows
            .iter()
            .map(|r| {
                let mut cells = r.values.clone();
                let path = dir.map_or_else(|| r.name.clone(), |d| d.join(&r.name).display().to_string());
                match &r.status {
                    Status::Done(m) => cells.extend([
                        format!("{} ({})", loss(m.best_val), m.best_epoch),
                        loss(m.final_val),
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
pub(super) fn count(n: usize, what: &str) -> String {
    if n == 1 { format!("1 {what}") } else { format!("{n} {what}s") }
}

/// One CSV record (RFC 4180: fields with `,`, `"` or a line break are quoted).
fn csv_line(cells: &[String]) -> String {
    let field = |c: &String| {
        if c.contains([',', '"', '\n', '\r']) { format!("\"{}\"", c.replace('"', "\"\"")) } else { c.clone() }
    };
    format!("{}\n", cells.iter().map(field).collect::<Vec<_>>().join(","))
}

/// `s` quoted for a POSIX shell when it needs to be.
pub(super) fn shell_quote(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

pub(super) fn command_line<S: AsRef<str>>(argv: &[S]) -> String {
    argv.iter().map(|a| shell_quote(a.as_ref())).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::tests::strings;

    #[test]
    fn quoting_and_csv_escape_what_they_must() {
        assert_eq!(shell_quote("--lr"), "--lr");
        assert_eq!(shell_quote("128,64"), "128,64");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(csv_line(&strings(&["128,64", "say \"hi\"", "x"])), "\"128,64\",\"say \"\"hi\"\"\",x\n");
    }
}
