//! The grid: the command line's train flags and a `--grid` TOML file read into [`Axis`]es, one
//! per train flag with the values it takes. Flags are found through clap's own definitions of
//! `regkern train` ([`Flags`]), so they are defined in one place only; [`walk`] splits an argument
//! list into train flags and the sweep's own, and is also how `--collect` reads recorded commands.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::Path;

use clap::{Args, Command};

use super::SET_BY_SWEEP;
use crate::train::TrainArgs;

/// Flags whose one value is a comma-separated list; their sweep list separator is `;` or `|`.
const LIST_VALUED: [&str; 1] = ["latent_dims"];

/// A long flag of a clap command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Flag {
    /// Its name without dashes (`latent_dims`, not the alias `latent-dims`).
    pub(super) long: String,
    /// False for a switch (`--moe`).
    pub(super) takes_value: bool,
}

/// The flags of a clap command, found by long name, alias or `-c` short.
pub(super) struct Flags {
    flags: Vec<Flag>,
    by_name: HashMap<String, usize>,
}

impl Flags {
    /// The flags `cmd` defines. Read from clap, so train's flags are defined in one place only.
    pub(super) fn of(cmd: &Command) -> Self {
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
    pub(super) fn train() -> Self {
        Flags::of(&TrainArgs::augment_args(Command::new("train")))
    }

    /// The flag named `name`: a long name or alias without dashes, or `-c`.
    fn get(&self, name: &str) -> Option<&Flag> {
        self.by_name.get(name).map(|&i| &self.flags[i])
    }
}

/// What [`walk`] makes of an argument list.
#[derive(Debug, Default)]
pub(super) struct Walked {
    /// Train flags in order, each with its value as written (`None`: a switch given bare).
    pub(super) train: Vec<(Flag, Option<String>)>,
    /// The sweep's own flags among them, with their values, to be parsed again.
    pub(super) sweep: Vec<String>,
}

/// Split `tokens` into train flags with their values and, when `sweep` is given, the sweep's own
/// flags (which win over train flags of the same name). A switch takes a following
/// `true`/`false` list as its value. `lenient` (for command lines recorded by other versions):
/// keep an unknown flag, with the next token as its value unless that is a flag.
pub(super) fn walk(
    tokens: &[String],
    train: &Flags,
    sweep: Option<&Flags>,
    lenient: bool,
) -> Result<Walked, String> {
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
pub(super) struct Axis {
    /// Long name without dashes.
    pub(super) flag: String,
    /// A switch: its values are `true` (given) and `false` (left out).
    pub(super) switch: bool,
    /// One value, or the list to sweep over.
    pub(super) values: Vec<String>,
}

/// The axis of a flag from the command line: `--lr 1e-3,3e-3`, `--moe`, `--moe true,false`.
pub(super) fn axis_from_arg(flag: &Flag, raw: Option<String>) -> Result<Axis, String> {
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
pub(super) fn axes_from_toml(path: &Path, train: &Flags) -> Result<Vec<Axis>, String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::plan::Plan;
    use crate::sweep::tests::{axes, strings};

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
}
