//! The plan: a grid's [`Axis`]es expanded into named [`Run`]s (the Cartesian product, the last
//! flag varying fastest), checked against `train`'s parser, and kept as `sweep.json` in the
//! sweep directory. Also the directory itself: the default `sweeps/<UTC time>`, and the resume
//! checks that refuse a used or differently planned `--out` and clear unfinished runs.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Args, Command};
use serde_json::{Value, json};

use super::clap_message;
use super::grid::Axis;
use crate::logdir::{utc_stamp, write_atomic};
use crate::train::TrainArgs;

/// The largest grid: beyond it a typo (a list where one value was meant) is the likelier cause.
const MAX_RUNS: usize = 100_000;

/// Longest run name before its uniqueness suffix, well under file systems' 255 bytes.
const MAX_NAME_LEN: usize = 150;

/// One training run of a sweep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Run {
    /// Its directory under the sweep directory.
    pub(super) name: String,
    /// The value of each varying flag, in [`Plan::varying`] order.
    pub(super) values: Vec<String>,
    /// `train` arguments, without `--logdir` and `--quiet`.
    pub(super) args: Vec<String>,
}

/// Every run of a grid.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Plan {
    /// The flags with more than one value, in grid order.
    pub(super) varying: Vec<String>,
    /// Which of them are switches (values `true`/`false`).
    pub(super) switches: Vec<bool>,
    /// The combinations, the last flag varying fastest.
    pub(super) runs: Vec<Run>,
}

impl Plan {
    /// The Cartesian product of `axes`, with unique run names.
    pub(super) fn new(axes: &[Axis]) -> Result<Plan, String> {
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
    pub(super) fn validate(&self) -> Result<(), String> {
        let mut cmd = TrainArgs::augment_args(Command::new("train")).no_binary_name(true);
        for run in &self.runs {
            let which = if self.varying.is_empty() { String::new() } else { format!("run {}: ", run.name) };
            match cmd.try_get_matches_from_mut(&run.args) {
                Err(e) => {
                    return Err(format!(
                        "{which}train rejects {} (see regkern train --help)",
                        clap_message(&e)
                    ));
                }
                Ok(m) => crate::config::refuse_inapplicable(&m).map_err(|e| format!("{which}{e}"))?,
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
    pub(super) fn read(dir: &Path) -> Result<Option<Plan>, String> {
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

/// `sweeps/<YYYYmmdd-HHMMSS>` (UTC), created here; `-2`, `-3`, ... when taken.
pub(super) fn default_out() -> Result<PathBuf, String> {
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
pub(super) fn prepare_out(out: &Path, plan: &Plan, resume: bool) -> Result<Vec<bool>, String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::tests::{axes, strings};

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
    fn clashing_names_get_suffixes() {
        let plan = Plan::new(&axes(&["--lr", "1e-3,0.001"]).unwrap()).unwrap();
        assert_eq!(plan.runs[0].name, "lr=0.001");
        assert_eq!(plan.runs[1].name, "lr=0.001-2");
        assert_eq!(sanitize("data=a b/c;d"), "data=a-b-c-d");
    }
}
