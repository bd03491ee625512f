//! `--collect DIR`: the results table of finished runs wherever they ran. Finds the run
//! directories under DIR by their `summary.json`, reads each run's flags back from the command
//! line its summary records, and takes the columns from `DIR/sweep.json` when there is one, else
//! from the flags whose values differ between the runs.

use std::fs;
use std::path::Path;

use super::grid::{Flag, Flags, walk};
use super::plan::Plan;
use super::runner::{Status, read_summary};
use super::table::{Row, Table, count};
use super::{SET_BY_SWEEP, SweepArgs};

/// Tabulate the finished runs under `dir`.
pub(super) fn collect(args: &SweepArgs, dir: &Path) -> Result<(), String> {
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
            Err(e) => errln!("warning: skipping a run: {e}"),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::tests::strings;

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
