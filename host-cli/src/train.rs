//! `regkern train`: a synthetic task end to end, as the seed's `python main.py --type ...` runs it.

use std::io::IsTerminal;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use regkern_core::{
    DataLoader, EpochInfo, Mode, Model, ModelConfig, Net, Observer, Optimizer, Schedule, StepInfo, Summary,
    Synthetic, TrainConfig, Trainer,
};
use serde_json::json;

use crate::config::{ModelArgs, OptArgs, SchedArgs};
use crate::plan::group;

/// Arguments of `regkern train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    pub(crate) model: ModelArgs,
    #[command(flatten)]
    opt: OptArgs,
    #[command(flatten)]
    sched: SchedArgs,
    /// Passes over the training set.
    #[arg(long, default_value_t = 100)]
    epochs: usize,
    /// Seed of the data, the initial weights and the shuffling.
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
    /// Training samples.
    #[arg(long = "train_size", alias = "train-size", default_value_t = 2048)]
    train_size: usize,
    /// Validation samples.
    #[arg(long = "val_size", alias = "val-size", default_value_t = 512)]
    val_size: usize,
    /// Clip gradients to this global L2 norm.
    #[arg(long = "clip_grad_norm", alias = "clip-grad-norm")]
    clip_grad_norm: Option<f32>,
    /// Print a loss line every N epochs [default: about 20 lines per run].
    #[arg(long = "log_every", alias = "log-every")]
    log_every: Option<usize>,
    /// Print only the final summary.
    #[arg(long, short)]
    pub(crate) quiet: bool,
    /// Print one JSON object at the end (resolved config, losses, steps, wall time) on stdout;
    /// progress goes to stderr.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Prints progress: a bar on a terminal, and a loss line every `log_every` epochs.
struct Progress {
    bar: ProgressBar,
    log_every: usize,
    quiet: bool,
    json: bool,
}

impl Progress {
    fn line(&self, s: &str) {
        if self.quiet {
            return;
        }
        self.bar.suspend(|| if self.json { eprintln!("{s}") } else { println!("{s}") });
    }
}

impl Observer for Progress {
    fn on_step(&mut self, _info: &StepInfo) {
        self.bar.inc(1);
    }

    fn on_epoch(&mut self, e: &EpochInfo, _trainer: &mut Trainer<'_>) -> ControlFlow<()> {
        let val = e.val_loss.map_or_else(|| "-".into(), |v| format!("{v:.4e}"));
        self.bar.set_message(format!("train {:.4e}  val {val}", e.train_loss));
        let last = e.epoch + 1 == e.epochs;
        if (e.epoch + 1).is_multiple_of(self.log_every) || last {
            let width = e.epochs.to_string().len();
            let moe = e.moe.map_or_else(String::new, |(drop, aux)| {
                format!("  drop {:.2}%  aux {aux:.4e}", 100.0 * drop)
            });
            self.line(&format!(
                "epoch {:>width$}/{}  train {:.4e}  val {val}  lr {:.2e}{moe}",
                e.epoch + 1,
                e.epochs,
                e.train_loss,
                e.lr
            ));
        }
        ControlFlow::Continue(())
    }
}

/// What a finished training run reports, besides the trained net.
pub struct Outcome {
    /// The model trained.
    pub cfg: ModelConfig,
    /// Optimizer and schedule used.
    pub optimizer: Optimizer,
    schedule: Schedule,
    batch: usize,
    param_count: usize,
    arena_bytes: usize,
    /// Epochs, steps, losses.
    pub summary: Summary,
    /// Seconds from the start to the end of the last validation.
    pub wall: f64,
}

/// Train per `args`, then hand the trained net, the validation set and the outcome to `then`
/// (the arena lives only for that call).
/// `cache_by_default`: plan a KV cache unless `--kv_cache off` (for `generate`).
pub fn train_then<R>(
    args: &TrainArgs,
    cache_by_default: bool,
    then: impl FnOnce(&mut Net<'_>, &Synthetic, &Outcome) -> Result<R, String>,
) -> Result<R, String> {
    let start = Instant::now();
    let cfg = args.model.model_config_with(cache_by_default)?;
    let optimizer = args.opt.optimizer()?;
    let batch = args.model.batch();
    if args.epochs == 0 {
        return Err("--epochs must be at least 1".into());
    }
    if args.train_size == 0 || args.val_size == 0 {
        return Err("--train_size and --val_size must be at least 1".into());
    }
    let model =
        Model::plan(&cfg, Mode::Training { max_batch: batch, optimizer }).map_err(|e| e.to_string())?;
    let arena_bytes = model.report().total_bytes().map_err(|e| e.to_string())?;
    let param_count = model.param_floats();
    let steps_per_epoch = args.train_size.div_ceil(batch);
    let schedule = args.sched.schedule(args.epochs, steps_per_epoch);
    let config = TrainConfig { epochs: args.epochs, schedule, clip_grad_norm: args.clip_grad_norm };
    config.validate().map_err(|e| e.to_string())?;

    let mut arena = vec![0.0f32; model.report().total_floats()];
    let mut net = Net::new(model, &mut arena).map_err(|e| e.to_string())?;
    net.set_seq_len(args.model.task().seq_len()).map_err(|e| e.to_string())?;
    if args.model.task().seq2seq() {
        net.set_target_len(args.model.task().seq_len()).map_err(|e| e.to_string())?;
    }
    net.init_params(args.seed);
    let (train, val) = Synthetic::split(args.model.task(), args.seed, args.train_size, args.val_size);
    let mut order = vec![0u32; args.train_size];
    let mut loader = DataLoader::new(&mut order, batch, true, args.seed).map_err(|e| e.to_string())?;
    let mut trainer = Trainer::new(net, optimizer, config).map_err(|e| e.to_string())?;

    let total_steps = (args.epochs * steps_per_epoch) as u64;
    let bar = if args.quiet || !std::io::stderr().is_terminal() {
        ProgressBar::hidden()
    } else {
        ProgressBar::with_draw_target(Some(total_steps), ProgressDrawTarget::stderr_with_hz(10))
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {elapsed_precise} eta {eta}  {msg}")
            .expect("the template is valid"),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let log_every = args.log_every.unwrap_or(args.epochs.div_ceil(20)).max(1);
    let mut progress = Progress { bar, log_every, quiet: args.quiet, json: args.json };
    if !args.json && !args.quiet {
        println!(
            "training {} on task {}: {} parameters, arena {} bytes, {} train / {} val samples, batch {batch}, {} lr {:e}",
            cfg.type_name(),
            args.model.task().name(),
            group(param_count),
            group(arena_bytes),
            args.train_size,
            args.val_size,
            optimizer.name(),
            optimizer.lr()
        );
    }
    let result = trainer.fit(&train, Some(&val), &mut loader, &mut progress);
    progress.bar.finish_and_clear();
    let summary = result.map_err(|e| e.to_string())?;
    let wall = start.elapsed().as_secs_f64();
    let outcome = Outcome { cfg, optimizer, schedule, batch, param_count, arena_bytes, summary, wall };
    then(trainer.net(), &val, &outcome)
}

/// Train the configured model on its task and print the summary (or JSON); autoregressive
/// models also report free-running generation on the validation set, encoder-decoders greedy
/// decoding.
pub fn run(args: &TrainArgs) -> Result<(), String> {
    train_then(args, false, |net, val, outcome| {
        let task = args.model.task();
        let free = if task.autoregressive() {
            Some(crate::generate::free_running_mse(net, val, args.model.kv_cache_dtype(false).is_some())?)
        } else {
            None
        };
        let greedy = if task.seq2seq() { Some(crate::generate::greedy_mse(net, val)?) } else { None };
        report(args, outcome, free, greedy);
        Ok(())
    })
}

/// Print the summary line, or the JSON object.
fn report(
    args: &TrainArgs,
    o: &Outcome,
    free: Option<crate::generate::FreeRunning>,
    greedy: Option<crate::generate::Greedy>,
) {
    let (cfg, optimizer, schedule, batch, summary, wall) =
        (&o.cfg, &o.optimizer, &o.schedule, o.batch, &o.summary, o.wall);
    let (param_count, arena_bytes) = (o.param_count, o.arena_bytes);
    let (best, best_epoch) = summary.best_val.map_or((f32::NAN, 0), |(v, e)| (v, e + 1));
    let final_val = summary.final_val_loss.unwrap_or(f32::NAN);
    if args.json {
        let out = json!({
            "config": {
                "type": cfg.type_name(),
                "task": args.model.task().name(),
                "latent_dims": match &cfg {
                    regkern_core::ModelConfig::Mlp(m) => json!(m.latent_dims.as_slice()),
                    _ => json!(null),
                },
                "custom_act": match &cfg {
                    regkern_core::ModelConfig::Mlp(m) => json!(m.act.name()),
                    _ => json!(null),
                },
                "transformer": match &cfg {
                    regkern_core::ModelConfig::Transformer(t) => json!({
                        "autoregressive": t.autoregressive,
                        "moe": t.moe.map(|m| json!({
                            "num_experts": m.num_experts,
                            "topk": m.top_k,
                            "capacity": match m.capacity { regkern_core::Capacity::Absolute(c) => json!(c), _ => json!(null) },
                            "capacity_factor": match m.capacity { regkern_core::Capacity::Factor(f) => json!(f), _ => json!(null) },
                            "alpha": m.alpha,
                        })),
                        "attention_type": t.attention.name(),
                        "num_heads": t.num_heads,
                        "num_groups": t.kv_heads(),
                        "embed_dim": t.embed_dim,
                        "ffn_dim": t.ffn_dim,
                        "num_layers": t.num_layers,
                        "max_seq_len": t.max_seq_len,
                    }),
                    _ => json!(null),
                },
                "encoder_decoder": match &cfg {
                    regkern_core::ModelConfig::EncoderDecoder(t) => json!({
                        "moe": t.moe.map(|m| json!({
                            "num_experts": m.num_experts,
                            "topk": m.top_k,
                            "capacity": match m.capacity { regkern_core::Capacity::Absolute(c) => json!(c), _ => json!(null) },
                            "capacity_factor": match m.capacity { regkern_core::Capacity::Factor(f) => json!(f), _ => json!(null) },
                            "alpha": m.alpha,
                        })),
                        "attention_type": t.attention.name(),
                        "num_heads": t.num_heads,
                        "num_groups": t.kv_heads(),
                        "embed_dim": t.embed_dim,
                        "ffn_dim": t.ffn_dim,
                        "num_encoder_layers": t.num_encoder_layers,
                        "num_decoder_layers": t.num_decoder_layers,
                        "max_seq_len": t.max_seq_len,
                    }),
                    _ => json!(null),
                },
                "epochs": args.epochs,
                "lr": optimizer.lr(),
                "optimizer": optimizer.name(),
                "momentum": args.opt.momentum,
                "weight_decay": args.opt.weight_decay,
                "scheduler": schedule.name(),
                "batch_size": batch,
                "seed": args.seed,
                "train_size": args.train_size,
                "val_size": args.val_size,
                "clip_grad_norm": args.clip_grad_norm,
            },
            "param_count": param_count,
            "arena_bytes": arena_bytes,
            "final_train_loss": summary.final_train_loss,
            "final_val_loss": final_val,
            "best_val_loss": best,
            "best_epoch": best_epoch,
            "epochs": summary.epochs,
            "steps": summary.steps,
            "wall_seconds": wall,
            "moe": summary.final_moe.map(|(drop_rate, aux)| json!({
                "drop_rate_last_epoch": drop_rate,
                "aux_loss_last_epoch": aux,
            })),
            "free_running": free.map(|f| json!({
                "mse": f.mse,
                "prompt": f.prompt,
                "steps": f.steps,
                "kv_cache": f.kv_cache,
                "seconds": f.seconds,
            })),
            "greedy_decode": greedy.as_ref().map(|g| json!({
                "mse": g.mse,
                "kv_cache": g.kv_cache,
                "seconds": g.seconds,
                "example": {"source": g.example[0], "target": g.example[1], "decoded": g.example[2]},
            })),
        });
        println!("{out}");
    } else {
        println!(
            "done: {} epochs, {} steps in {wall:.2} s — final train {:.4e}, final val {final_val:.4e}, best val {best:.4e} (epoch {best_epoch})",
            summary.epochs,
            group(summary.steps as usize),
            summary.final_train_loss
        );
        if let Some(f) = free {
            println!(
                "free-running generation on the validation set (prompt {}, generate {}, {}): MSE {:.4e}",
                f.prompt,
                f.steps,
                f.kv_cache.map_or_else(|| "no KV cache".to_string(), |d| format!("{d} KV cache")),
                f.mse
            );
        }
        if let Some(g) = greedy {
            let fmt = crate::generate::fmt_values;
            println!(
                "greedy decoding of the validation set ({}): MSE {:.4e} in {:.2} s",
                g.kv_cache.map_or_else(|| "no caches".to_string(), |d| format!("{d} KV cache")),
                g.mse,
                g.seconds
            );
            println!("validation sequence 0:");
            println!("  source  {}", fmt(&g.example[0]));
            println!("  target  {}", fmt(&g.example[1]));
            println!("  decoded {}", fmt(&g.example[2]));
        }
    }
}
