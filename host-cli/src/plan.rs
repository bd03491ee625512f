//! `regkern plan`: what a config costs in memory, before any memory exists.

use clap::Args;
use regkern_core::{Mode, Model, Region, Report};
use serde_json::json;

use crate::config::{ModelArgs, OptArgs};

/// Arguments of `regkern plan`.
#[derive(Args, Debug)]
pub struct PlanArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    opt: OptArgs,
    /// Also list every parameter tensor (PyTorch name, shape, offset).
    #[arg(long)]
    params: bool,
    /// Print one JSON object instead of tables. It lists the parameter tensors (`params`) when
    /// `--params` is given or the model has at most 100,000 of them; `param_tensors` always
    /// counts them.
    #[arg(long)]
    json: bool,
}

/// Most parameter tensors `plan --json` lists without `--params`.
const MAX_LISTED: usize = 100_000;

/// Plan the config for inference and for training and print both reports.
pub fn run(args: &PlanArgs) -> Result<(), String> {
    let cfg = args.model.model_config()?;
    let optimizer = args.opt.optimizer()?;
    let batch = args.model.batch();
    // Planned for the sequences the task feeds (`--seq_len`, default 32), as `train` plans them.
    let seq_len = args.model.task_seq_len()?;
    if seq_len > cfg.max_seq_len() {
        return Err(format!("--seq_len {seq_len} is longer than --max_seq_len {}", cfg.max_seq_len()));
    }
    let memory = args.model.memory();
    let plan = |mode| Model::plan_with(&cfg, mode, seq_len, memory).map_err(|e| e.to_string());
    let infer = plan(Mode::Inference { max_batch: batch })?;
    let train = plan(Mode::Training { max_batch: batch, optimizer })?;
    if args.json {
        let regions = |r: &Report| {
            let mut m = serde_json::Map::new();
            for region in Region::ALL {
                m.insert(region.name().into(), json!(r.bytes(region)));
            }
            m.insert("total".into(), json!(r.total_bytes().unwrap_or(usize::MAX)));
            serde_json::Value::Object(m)
        };
        // Planning is O(1) in the number of layers; listing their tensors is not.
        let list = args.params || train.param_count() <= MAX_LISTED;
        let params: Vec<_> = train
            .params()
            .take(if list { usize::MAX } else { 0 })
            .map(|p| json!({"name": p.name.as_str(), "shape": p.shape(), "offset": p.slot.offset}))
            .collect();
        let out = json!({
            "type": cfg.type_name(),
            "max_batch": batch,
            "seq_len": seq_len,
            "lean_memory": memory == regkern_core::Memory::Lean,
            "optimizer": optimizer.name(),
            "param_count": train.param_floats(),
            "param_tensors": train.param_count(),
            "inference": regions(infer.report()),
            "training": regions(train.report()),
            "params": params,
        });
        outln!("{out}");
        return Ok(());
    }
    outln!(
        "{} model: {} parameters in {} tensors; max batch {batch}; {}{}training with {}",
        cfg.type_name(),
        group(train.param_floats()),
        train.param_count(),
        if cfg.max_seq_len() > 1 { format!("sequences of {seq_len} tokens; ") } else { String::new() },
        if memory == regkern_core::Memory::Lean { "lean " } else { "" },
        optimizer.name()
    );
    outln!("{:<10} {:>14} {:>14}", "region", "inference", "training");
    for region in Region::ALL {
        outln!(
            "{:<10} {:>14} {:>14}",
            region.name(),
            bytes(infer.report().bytes(region)),
            bytes(train.report().bytes(region))
        );
    }
    let total = |r: &Report| r.total_bytes().map(bytes).unwrap_or_else(|_| "overflow".into());
    outln!("{:<10} {:>14} {:>14}", "total", total(infer.report()), total(train.report()));
    if args.params {
        outln!();
        outln!("{:<40} {:>12} {:>10}", "parameter", "shape", "offset");
        for p in train.params() {
            let shape = p.shape().iter().map(|d| d.to_string()).collect::<Vec<_>>().join("×");
            outln!("{:<40} {:>12} {:>10}", p.name.as_str(), shape, p.slot.offset);
        }
    }
    Ok(())
}

/// `1234567` → `"1,234,567 B"`.
pub fn bytes(n: usize) -> String {
    format!("{} B", group(n))
}

/// Digits grouped by thousands.
pub fn group(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn groups_thousands() {
        assert_eq!(super::group(0), "0");
        assert_eq!(super::group(1234), "1,234");
        assert_eq!(super::group(1234567), "1,234,567");
    }
}
