//! `regkern generate`, and free-running evaluation of autoregressive models.
//!
//! `generate` trains a model with the same flags as `train` and then generates from it, in one
//! command.

use std::time::Instant;

use clap::Args;
use regkern_core::models::{Context, Generate};
use regkern_core::{Dataset, Net};
use serde_json::json;

use crate::train::{TrainArgs, train_then};

/// Prompt and continuation of the free-running validation: the first 16 values of each
/// validation wave, then the remaining 17 (WORKLOADS.md E4, baseline.md).
pub const PROMPT: usize = 16;
/// Values generated after each prompt.
pub const STEPS: usize = 17;

/// Free-running generation over a validation set.
#[derive(Clone, Copy, Debug)]
pub struct FreeRunning {
    /// Mean squared error of the generated values against the true continuation.
    pub mse: f32,
    /// Prompt length.
    pub prompt: usize,
    /// Values generated per sequence.
    pub steps: usize,
    /// KV cache type used, if any.
    pub kv_cache: Option<&'static str>,
    /// Seconds it took.
    pub seconds: f64,
}

/// For every validation sequence, prompt with its first [`PROMPT`] positions and generate the
/// remaining [`STEPS`] (expanding context) — for shorter series (user data), the first half and
/// the rest — and return the MSE against the truth.
pub fn free_running_mse(
    net: &mut Net<'_>,
    val: &dyn Dataset,
    use_cache: bool,
) -> Result<FreeRunning, String> {
    let start = Instant::now();
    let (in_len, out_len, dim) = (val.in_len(), val.out_len(), net.model().in_dim());
    // The series is x's T positions then y's last: T + 1 positions.
    let series = in_len / dim + 1;
    if out_len != in_len || series < 3 {
        return Err("free-running evaluation needs series of at least 3 positions".into());
    }
    let prompt_len = PROMPT.min(series / 2);
    let steps = series - prompt_len;
    let (p, s) = (prompt_len * dim, steps * dim);
    let batch = net.model().mode().max_batch();
    let (mut x, mut y) = (vec![0.0f32; in_len], vec![0.0f32; out_len]);
    let (mut prompt, mut truth, mut out) =
        (vec![0.0f32; batch * p], vec![0.0f32; batch * s], vec![0.0f32; batch * s]);
    let (mut sum_sq, mut count) = (0.0f64, 0usize);
    let mut first = 0;
    while first < val.len() {
        let n = batch.min(val.len() - first);
        for b in 0..n {
            val.get(first + b, &mut x, &mut y);
            // Position t + 1 of the series is y's position t.
            prompt[b * p..][..p].copy_from_slice(&x[..p]);
            truth[b * s..][..s].copy_from_slice(&y[p - dim..p - dim + s]);
        }
        let g = Generate { steps, context: Context::Expanding, use_cache };
        net.generate(&prompt[..n * p], prompt_len, &mut out[..n * s], g).map_err(|e| e.to_string())?;
        sum_sq += out[..n * s].iter().zip(&truth).map(|(a, b)| f64::from(a - b).powi(2)).sum::<f64>();
        count += n * s;
        first += n;
    }
    let kv_cache = if use_cache { net.model().kv_cache().map(|d| d.name()) } else { None };
    Ok(FreeRunning {
        mse: (sum_sq / count as f64) as f32,
        prompt: prompt_len,
        steps,
        kv_cache,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Greedy decoding of an encoder-decoder over a validation set.
#[derive(Clone, Debug)]
pub struct Greedy {
    /// Mean squared error of the decoded sequences against the targets.
    pub mse: f32,
    /// KV cache type used, if any.
    pub kv_cache: Option<&'static str>,
    /// Seconds it took.
    pub seconds: f64,
    /// Validation sequence 0: source, target and the decoded sequence.
    pub example: [Vec<f32>; 3],
}

/// Decode every validation source greedily (the encoder once, then one target value per step
/// fed back; through the caches when the model planned them) and return the MSE against the
/// targets, with validation sequence 0 as an example, decoded alone (as `predict` would decode
/// it).
pub fn greedy_mse(net: &mut Net<'_>, val: &dyn Dataset) -> Result<Greedy, String> {
    let start = Instant::now();
    let (in_len, out_len) = (val.in_len(), val.out_len());
    let batch = net.model().mode().max_batch();
    let (mut x, mut y) = (vec![0.0f32; batch * in_len], vec![0.0f32; batch * out_len]);
    let mut out = vec![0.0f32; batch * out_len];
    let (mut sum_sq, mut first) = (0.0f64, 0);
    let mut example = [Vec::new(), Vec::new(), Vec::new()];
    while first < val.len() {
        let n = batch.min(val.len() - first);
        let indices: Vec<u32> = (first..first + n).map(|i| i as u32).collect();
        val.fill(&indices, &mut x[..n * in_len], &mut y[..n * out_len]);
        net.predict(&x[..n * in_len], &mut out[..n * out_len]).map_err(|e| e.to_string())?;
        sum_sq += out[..n * out_len].iter().zip(&y).map(|(a, b)| f64::from(a - b).powi(2)).sum::<f64>();
        if first == 0 {
            example = [x[..in_len].to_vec(), y[..out_len].to_vec(), Vec::new()];
        }
        first += n;
    }
    // The example is decoded alone, as `predict` decodes one source: a batch of one runs the
    // matrix-vector kernels, whose last bits differ from a batch's (and a MoE's capacity applies
    // per call).
    let mut decoded = vec![0.0f32; out_len];
    net.predict(&example[0], &mut decoded).map_err(|e| e.to_string())?;
    example[2] = decoded;
    Ok(Greedy {
        mse: (sum_sq / (val.len() * out_len) as f64) as f32,
        kv_cache: net.model().kv_cache().map(|d| d.name()),
        seconds: start.elapsed().as_secs_f64(),
        example,
    })
}

/// Values to two decimals, comma-separated.
pub fn fmt_values(v: &[f32]) -> String {
    v.iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>().join(" ")
}

/// Arguments of `regkern generate`.
#[derive(Args, Debug)]
pub struct GenerateArgs {
    #[command(flatten)]
    train: TrainArgs,
    /// Generate from this checkpoint instead of training first (a run directory's
    /// model.safetensors or best.safetensors; the config is in its metadata). Needs --prompt;
    /// the KV cache is f32 unless --kv_cache says otherwise.
    #[arg(long)]
    checkpoint: Option<std::path::PathBuf>,
    /// Prompt values, comma-separated [default: the first 16 values of validation sequence 0].
    #[arg(long, allow_hyphen_values = true)]
    prompt: Option<String>,
    /// Values to generate.
    #[arg(long, default_value_t = STEPS)]
    steps: usize,
    /// Keep only the last W values (a sliding window) instead of the whole context.
    #[arg(long)]
    window: Option<usize>,
}

/// The flags `generate --checkpoint` takes besides its own (`--prompt`, `--steps`, `--window`):
/// how to run the model, not how to build or train it.
const WITH_CHECKPOINT: &[&str] =
    &["checkpoint", "prompt", "steps", "window", "kv_cache", "use_kv_cache", "kernels", "json", "quiet"];

/// Train an autoregressive model per the flags, then generate from the prompt; or, with
/// `--checkpoint`, generate from a trained model. `m`: the command's matches, to refuse training
/// flags given with `--checkpoint`.
pub fn run(args: &GenerateArgs, m: &clap::ArgMatches) -> Result<(), String> {
    let prompt = parse_prompt(args.prompt.as_deref())?;
    if let Some(path) = &args.checkpoint {
        let given = crate::config::given_flags::<GenerateArgs>(m);
        if let Some((_, long)) = given.iter().find(|(id, _)| !WITH_CHECKPOINT.contains(&id.as_str())) {
            return Err(format!(
                "--{long} configures a model to train; with --checkpoint the model is the checkpoint's"
            ));
        }
        if prompt.is_empty() {
            return Err(
                "--checkpoint needs --prompt \"v1,v2,...\" (the training data is not in a checkpoint)".into(),
            );
        }
        return from_checkpoint(args, path, &prompt);
    }
    if !args.train.model.task().autoregressive() {
        return Err("generate needs an autoregressive model: --type transformer --autoregressive".into());
    }
    // Allocated (and so checked) before training, which would otherwise be lost.
    let mut out = crate::mem::zeroed::<f32>(args.steps, "the generated values")?;
    train_then(&args.train, true, |net, val, outcome| {
        // Without a prompt: validation sequence 0, whose true continuation we can show.
        let (prompt, truth) = if prompt.is_empty() {
            let (mut x, mut y) = (vec![0.0f32; val.in_len()], vec![0.0f32; val.out_len()]);
            val.get(0, &mut x, &mut y);
            let series: Vec<f32> = x[..1].iter().chain(&y).copied().collect();
            (series[..PROMPT].to_vec(), series[PROMPT..].to_vec())
        } else {
            (prompt.clone(), Vec::new())
        };
        generate_and_print(args, net, (&prompt, &truth), &mut out, Some(outcome.summary.final_val_loss))
    })
}

/// The prompt values of `--prompt "v1,v2,..."` (none without it).
fn parse_prompt(s: Option<&str>) -> Result<Vec<f32>, String> {
    let Some(s) = s else { return Ok(Vec::new()) };
    s.split(',')
        .map(|v| match v.trim().parse::<f32>() {
            Ok(x) if x.is_finite() => Ok(x),
            Ok(_) => Err(format!("--prompt: {:?} is not finite", v.trim())),
            Err(_) => Err(format!("--prompt: {:?} is not a number", crate::data::clip(v.trim()))),
        })
        .collect()
}

/// `generate --checkpoint`: plan the checkpoint's model (its config from the metadata, with the
/// KV cache `--kv_cache` asks for, f32 by default) for one sequence, load it and generate.
fn from_checkpoint(args: &GenerateArgs, path: &std::path::Path, prompt: &[f32]) -> Result<(), String> {
    use regkern_core::checkpoint::{self, Header};
    use regkern_core::{Mode, Model, ModelConfig};
    let shown = path.display();
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let cfg = Header::parse(&bytes).and_then(|h| h.config()).map_err(|e| format!("{shown}: {e}"))?;
    let cfg = match cfg {
        ModelConfig::Transformer(t) if t.autoregressive => {
            ModelConfig::Transformer(regkern_core::TransformerConfig {
                kv_cache: args.train.model.kv_cache_dtype(true),
                ..t
            })
        }
        other => {
            return Err(format!(
                "{shown} holds a {} model; generate needs an autoregressive transformer (predict runs every model)",
                other.type_name()
            ));
        }
    };
    let model = Model::plan(&cfg, Mode::Inference { max_batch: 1 }).map_err(|e| format!("{shown}: {e}"))?;
    checkpoint::verify(&bytes, &model, None)
        .map_err(|e| crate::train::checkpoint_error(&shown, &bytes, e))?;
    let mut out = crate::mem::zeroed::<f32>(args.steps, "the generated values")?;
    let mut arena = crate::mem::zeroed::<f32>(model.report().total_floats(), "the arena")?;
    let mut net = Net::new(model, &mut arena).map_err(|e| e.to_string())?;
    net.set_kernels(args.train.model.kernels.kernels());
    net.load_checkpoint(&bytes).map_err(|e| crate::train::checkpoint_error(&shown, &bytes, e))?;
    generate_and_print(args, &mut net, (prompt, &[]), &mut out, None)
}

/// Generate `out.len()` values after `prompt` and print them (as JSON with `--json`), with the
/// MSE against `truth` where there is one, and the training run's final validation loss.
fn generate_and_print(
    args: &GenerateArgs,
    net: &mut Net<'_>,
    (prompt, truth): (&[f32], &[f32]),
    out: &mut [f32],
    final_val_loss: Option<Option<f32>>,
) -> Result<(), String> {
    let context = match args.window {
        Some(window) => Context::Sliding { window },
        None => Context::Expanding,
    };
    let use_cache = args.train.model.kv_cache_dtype(true).is_some();
    let start = Instant::now();
    net.generate(prompt, prompt.len(), out, Generate { steps: args.steps, context, use_cache })
        .map_err(|e| e.to_string())?;
    let seconds = start.elapsed().as_secs_f64();
    let compared = truth.len().min(out.len());
    let mse = (compared > 0).then(|| {
        out[..compared].iter().zip(truth).map(|(a, b)| f64::from(a - b).powi(2)).sum::<f64>()
            / compared as f64
    });
    let cache = if use_cache { net.model().kv_cache().map(|d| d.name()) } else { None };
    if args.train.json {
        let mut v = json!({
            "prompt": prompt,
            "generated": out,
            "truth": &truth[..compared],
            "mse": mse,
            "kv_cache": cache,
            "window": args.window,
            "generate_seconds": seconds,
        });
        match final_val_loss {
            Some(loss) => v["train_final_val_loss"] = json!(loss),
            None => v["checkpoint"] = json!(args.checkpoint.as_ref().map(|p| p.display().to_string())),
        }
        outln!("{v}");
    } else {
        let fmt = |v: &[f32]| v.iter().map(|x| format!("{x:.4}")).collect::<Vec<_>>().join(", ");
        outln!("prompt ({}): {}", prompt.len(), fmt(prompt));
        outln!(
            "generated ({}, {}): {}",
            out.len(),
            cache.map_or("no KV cache".into(), |c| format!("{c} KV cache")),
            fmt(out)
        );
        if let Some(mse) = mse {
            outln!("truth ({compared}): {}", fmt(&truth[..compared]));
            outln!("MSE over {compared} values: {mse:.4e}");
        }
    }
    Ok(())
}
