//! `regkern train`: a synthetic task (or the user's CSV) end to end, as the seed's
//! `python main.py --type ...` runs it, with a run directory of logs, plots and checkpoints
//! (see [`crate::logdir`]).

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use indicatif::ProgressBar;
use regkern_core::checkpoint::Header;
use regkern_core::{
    DataLoader, Dataset, EpochInfo, Mode, Model, ModelConfig, Net, Observer, Optimizer, Schedule, StepInfo,
    Summary, TrainConfig, Trainer,
};
use serde_json::json;

use crate::config::{ModelArgs, OptArgs, SchedArgs};
use crate::data::{self, Shape};
use crate::logdir::{MetricsRow, RunDir};
use crate::plan::group;
use crate::plot;
use crate::tensorboard::EventWriter;

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
    /// Training samples (synthetic tasks).
    #[arg(long = "train_size", alias = "train-size", default_value_t = 2048)]
    train_size: usize,
    /// Validation samples (synthetic tasks).
    #[arg(long = "val_size", alias = "val-size", default_value_t = 512)]
    val_size: usize,
    /// Train on this CSV file instead of the synthetic task: one sample per row (see `--input_dim`,
    /// `--output_dim`, `--target_len`; README "Your own data").
    #[arg(long)]
    data: Option<PathBuf>,
    /// With --data: the fraction of rows (the last ones) kept for validation.
    #[arg(long = "val_fraction", alias = "val-fraction", default_value_t = 0.2)]
    val_fraction: f32,
    /// With --data: whether the first row is a header of names (`auto`: when none of its cells
    /// is a number).
    #[arg(long, value_enum, default_value = "auto")]
    header: crate::data::HeaderRow,
    /// Clip gradients to this global L2 norm.
    #[arg(long = "clip_grad_norm", alias = "clip-grad-norm")]
    clip_grad_norm: Option<f32>,
    /// Run directory: TensorBoard events, metrics.csv, plots, checkpoints, config and summary
    /// [default: runs/<type>-<UTC time>].
    #[arg(long)]
    pub(crate) logdir: Option<PathBuf>,
    /// Write no run directory.
    #[arg(long = "no_logdir", alias = "no-logdir", conflicts_with_all = ["logdir", "resume"])]
    no_logdir: bool,
    /// Continue the run in --logdir from its last checkpoint, with the flags its config.json
    /// recorded (--epochs may grow; a flag given with another value is an error).
    #[arg(long, requires = "logdir")]
    resume: bool,
    /// Plot predictions every N epochs (and after the last) [default: about 5 plots per run].
    #[arg(long = "plot_every", alias = "plot-every")]
    plot_every: Option<usize>,
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

/// Prints progress (a bar on a terminal, a loss line every `log_every` epochs) and, with a run
/// directory, logs every epoch there.
struct Progress<'d> {
    bar: ProgressBar,
    log_every: usize,
    quiet: bool,
    json: bool,
    run: Option<RunLog<'d>>,
    /// The first error writing the run directory; training stops on it.
    error: Option<String>,
}

/// What the run directory gets each step and epoch.
struct RunLog<'d> {
    dir: RunDir,
    events: EventWriter,
    val: &'d dyn Dataset,
    plot_every: usize,
    /// Lowest validation loss so far (including before a resume) and its 1-based epoch.
    best: Option<(f32, usize)>,
    grad_sum: f64,
    grad_steps: usize,
}

impl Progress<'_> {
    fn line(&self, s: &str) {
        if self.quiet {
            return;
        }
        self.bar.suspend(|| if self.json { errln!("{s}") } else { outln!("{s}") });
    }
}

impl Observer for Progress<'_> {
    /// A run directory logs the norm of every step.
    fn wants_grad_norm(&self) -> bool {
        self.run.is_some()
    }

    fn on_step(&mut self, info: &StepInfo) {
        self.bar.inc(1);
        if let Some(run) = &mut self.run {
            // Measured at every step: `wants_grad_norm` asked for it.
            let grad_norm = info.grad_norm.unwrap_or(f32::NAN);
            run.grad_sum += f64::from(grad_norm);
            run.grad_steps += 1;
            let step = info.step as i64 + 1;
            let logged = run.events.scalar("step/loss", step, info.loss).and_then(|()| {
                run.events.scalar("step/lr", step, info.lr)?;
                run.events.scalar("step/grad_norm", step, grad_norm)
            });
            if let Err(e) = logged {
                self.error.get_or_insert(format!("cannot write TensorBoard events: {e}"));
            }
        }
    }

    fn on_epoch(&mut self, e: &EpochInfo, trainer: &mut Trainer<'_>) -> ControlFlow<()> {
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
        if let Some(run) = &mut self.run
            && let Err(err) = run.epoch(e, trainer)
        {
            self.error = Some(err);
        }
        if self.error.is_some() { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
    }
}

impl RunLog<'_> {
    /// Log epoch `e`: the best model, metrics, TensorBoard scalars, every few epochs a
    /// prediction plot, and last the training checkpoint, the commit point of the epoch (see
    /// [`crate::logdir`]: a resume re-runs whatever was written after the last one).
    fn epoch(&mut self, e: &EpochInfo, trainer: &mut Trainer<'_>) -> Result<(), String> {
        let epoch = e.epoch + 1;
        if let Some(v) = e.val_loss
            && self.best.is_none_or(|(b, _)| v < b)
        {
            self.best = Some((v, epoch));
            let net = trainer.net();
            let mut buf = vec![0u8; net.checkpoint_len().map_err(|e| e.to_string())?];
            let n = net.save_checkpoint(&mut buf).map_err(|e| e.to_string())?;
            self.dir.write_atomic("best.safetensors", &buf[..n])?;
        }
        let grad_norm = (self.grad_sum / self.grad_steps.max(1) as f64) as f32;
        (self.grad_sum, self.grad_steps) = (0.0, 0);
        self.dir.metrics_row(&MetricsRow {
            epoch,
            step: e.steps,
            train_loss: e.train_loss,
            val_loss: e.val_loss,
            lr: e.lr,
            grad_norm,
            moe: e.moe,
        })?;
        let tb = |r: std::io::Result<()>| r.map_err(|e| format!("cannot write TensorBoard events: {e}"));
        let step = epoch as i64;
        tb(self.events.scalar("loss/train", step, e.train_loss))?;
        if let Some(v) = e.val_loss {
            tb(self.events.scalar("loss/val", step, v))?;
        }
        tb(self.events.scalar("lr", step, e.lr))?;
        tb(self.events.scalar("grad_norm", step, grad_norm))?;
        if let Some((drop, aux)) = e.moe {
            tb(self.events.scalar("moe/drop_rate", step, drop))?;
            tb(self.events.scalar("moe/aux_loss", step, aux))?;
        }
        if epoch.is_multiple_of(self.plot_every) || epoch == e.epochs {
            let fig = predictions_figure(trainer.net(), self.val, epoch)?;
            let png = fig.to_png();
            let (w, h) = fig.size();
            tb(self.events.image("predictions", step, &png, w, h))?;
            self.dir.write_atomic(&format!("predictions/epoch_{epoch:04}.png"), &png)?;
            self.dir.write_atomic(&format!("predictions/epoch_{epoch:04}.svg"), fig.to_svg().as_bytes())?;
        }
        tb(self.events.flush())?;
        let mut buf = vec![0u8; trainer.checkpoint_len().map_err(|e| e.to_string())?];
        let n = trainer.save_checkpoint(&mut buf).map_err(|e| e.to_string())?;
        self.dir.write_atomic("checkpoint.safetensors", &buf[..n])
    }
}

/// Predictions of `net` on validation data: prediction against target for models with one
/// output per sample; for sequence models, three validation sequences, target solid and
/// prediction dashed (teacher-forced next values for autoregressive models, greedy decoding for
/// encoder-decoders).
pub fn predictions_figure(
    net: &mut Net<'_>,
    val: &dyn Dataset,
    epoch: usize,
) -> Result<plot::Figure, String> {
    let per_token = net.model().per_token();
    let n = val.len().min(if per_token { 3 } else { 512 });
    let (il, ol) = (val.in_len(), val.out_len());
    let (mut x, mut y) = (vec![0.0f32; n * il], vec![0.0f32; n * ol]);
    let indices: Vec<u32> = (0..n as u32).collect();
    val.fill(&indices, &mut x, &mut y);
    let mut out = vec![0.0f32; n * ol];
    let batch = net.model().mode().max_batch();
    for (xs, os) in x.chunks(batch * il).zip(out.chunks_mut(batch * ol)) {
        net.predict(xs, os).map_err(|e| e.to_string())?;
    }
    if !per_token {
        return Ok(plot::scatter(&out, &y, &format!("validation, epoch {epoch}: prediction vs target")));
    }
    // First output channel of each position.
    let od = net.model().out_dim();
    let channel = |v: &[f32]| v.iter().step_by(od).copied().collect::<Vec<f32>>();
    let mut series = Vec::new();
    for (i, (ys, os)) in y.chunks(ol).zip(out.chunks(ol)).enumerate() {
        let color = plot::PALETTE[i % plot::PALETTE.len()];
        series.push(plot::Series { label: format!("target {i}"), values: channel(ys), color, dashed: false });
        series.push(plot::Series {
            label: format!("prediction {i}"),
            values: channel(os),
            color,
            dashed: true,
        });
    }
    let what = if matches!(net.model().config(), ModelConfig::EncoderDecoder(_)) {
        "greedy decoding"
    } else {
        "next-value prediction"
    };
    Ok(plot::curves(&format!("validation, epoch {epoch}: {what}"), &series))
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
    /// Epochs, steps, losses (of this invocation).
    pub summary: Summary,
    /// Lowest validation loss of the whole run (resumes included) and its 1-based epoch.
    best: Option<(f32, usize)>,
    /// What the data was (task name or file).
    data: String,
    /// Train and validation samples.
    sizes: (usize, usize),
    /// The run directory, if any.
    pub logdir: Option<PathBuf>,
    /// Its TensorBoard event file.
    events: Option<PathBuf>,
    /// Seconds from the start to the end of the last validation.
    pub wall: f64,
}

/// Train per `args`, then hand the trained net, the validation set and the outcome to `then`
/// (the arena lives only for that call). `cache_by_default`: plan a KV cache unless
/// `--kv_cache off` (for `generate`).
pub fn train_then<R>(
    args: &TrainArgs,
    cache_by_default: bool,
    then: impl FnOnce(&mut Net<'_>, &dyn Dataset, &Outcome) -> Result<R, String>,
) -> Result<R, String> {
    let start = Instant::now();
    let task = args.model.task();
    let (data, shape, source) = match &args.data {
        Some(path) => {
            if args.model.input_dim == 0 || args.model.output_dim == 0 {
                return Err("--input_dim and --output_dim must be at least 1".into());
            }
            let (d, s) = data::read_training_csv(path, args.model.layout(), args.val_fraction, args.header)?;
            (d, s, path.display().to_string())
        }
        None => {
            if args.train_size == 0 || args.val_size == 0 {
                return Err("--train_size and --val_size must be at least 1".into());
            }
            let seq_len = args.model.task_seq_len()?;
            let d = data::synthetic(task, args.seed, (args.train_size, args.val_size), seq_len)?;
            (d, Shape::of_task(task, seq_len), format!("the {} task", task.name()))
        }
    };
    let cfg = args.model.model_config_for(&shape, &source, cache_by_default)?;
    let optimizer = args.opt.optimizer()?;
    let batch = args.model.batch();
    if args.epochs == 0 {
        return Err("--epochs must be at least 1".into());
    }
    if args.plot_every == Some(0) {
        return Err("--plot_every must be at least 1".into());
    }
    // Activations are planned for the longest sequence the run feeds; `generate` may extend the
    // context to every position of `max_seq_len`.
    let plan_len = if cache_by_default { cfg.max_seq_len() } else { shape.seq_len.max(shape.target_len) };
    if plan_len > cfg.max_seq_len() {
        return Err(format!(
            "{source} has sequences of {plan_len} tokens, longer than --max_seq_len {}",
            cfg.max_seq_len()
        ));
    }
    let model =
        Model::plan_with(&cfg, Mode::Training { max_batch: batch, optimizer }, plan_len, args.model.memory())
            .map_err(|e| e.to_string())?;
    let arena_bytes = model.report().total_bytes().map_err(|e| e.to_string())?;
    let param_count = model.param_floats();
    let (train, val) = (data.train(), data.val());
    let steps_per_epoch = train.len().div_ceil(batch);
    let schedule = args.sched.schedule(args.epochs, steps_per_epoch);
    let config = TrainConfig { epochs: args.epochs, schedule, clip_grad_norm: args.clip_grad_norm };
    config.validate().map_err(|e| e.to_string())?;

    // The arena and the sample order are the run's large buffers: both are checked before either
    // is allocated.
    let order_bytes = crate::mem::bytes_of::<u32>(train.len(), "the sample order")?;
    let needed = (arena_bytes as u64).saturating_add(order_bytes);
    crate::mem::check(needed, "training")?;
    let mut arena = crate::mem::zeroed::<f32>(model.report().total_floats(), "the arena")?;
    let mut net = Net::new(model, &mut arena).map_err(|e| e.to_string())?;
    net.set_kernels(args.model.kernels.kernels());
    net.set_seq_len(shape.seq_len).map_err(|e| e.to_string())?;
    if matches!(cfg, ModelConfig::EncoderDecoder(_)) {
        net.set_target_len(shape.target_len).map_err(|e| e.to_string())?;
    }
    net.init_params(args.seed);
    let mut order = crate::mem::zeroed::<u32>(train.len(), "the sample order")?;
    let mut loader = DataLoader::new(&mut order, batch, true, args.seed).map_err(|e| e.to_string())?;
    let mut trainer = Trainer::new(net, optimizer, config).map_err(|e| e.to_string())?;

    let logdir = match (&args.logdir, args.no_logdir) {
        (_, true) => None,
        (Some(dir), false) => Some(dir.clone()),
        (None, false) => Some(crate::logdir::default_dir(cfg.type_name())?),
    };
    let is_moe = crate::config::is_moe(&cfg);
    // Resuming a run whose training finished but whose summary was not written: its last row.
    let mut finished = None;
    let run = match &logdir {
        Some(dir) => {
            // Resuming restores the checkpoint and cuts metrics.csv back to it before it reopens;
            // a run that saved no checkpoint yet starts again in place.
            let resuming = args.resume && dir.join("checkpoint.safetensors").exists();
            if args.resume && !resuming {
                errln!("note: {} holds no checkpoint yet; the run starts from the beginning", dir.display());
            }
            let kept =
                if resuming { resume(&mut trainer, dir, &cfg, args.epochs)? } else { Default::default() };
            if resuming && trainer.epochs_done() == args.epochs {
                finished = Some(kept.last);
            }
            let best = kept.best;
            let run_dir = RunDir::open(dir, resuming, is_moe)?;
            if !resuming {
                let config = config_json(args, &cfg, &optimizer, &schedule, batch, &source);
                run_dir.write_json("config.json", &config)?;
            } else if let Some(mut config) = std::fs::read_to_string(dir.join("config.json"))
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .filter(|c| c["epochs"] != json!(args.epochs))
            {
                // The run now ends at this --epochs: a later `--resume` alone continues to it.
                config["epochs"] = json!(args.epochs);
                run_dir.write_json("config.json", &config)?;
            }
            let plot_every = args.plot_every.unwrap_or(args.epochs.div_ceil(5)).max(1);
            let events = EventWriter::create(dir)
                .map_err(|e| format!("cannot create TensorBoard events in {}: {e}", dir.display()))?;
            Some(RunLog { dir: run_dir, events, val, plot_every, best, grad_sum: 0.0, grad_steps: 0 })
        }
        None => None,
    };

    let done = trainer.epochs_done();
    let total_steps = (args.epochs.saturating_sub(done) as u64).saturating_mul(steps_per_epoch as u64);
    let bar = crate::progress_bar(
        total_steps,
        args.quiet,
        "{bar:30} {pos}/{len} steps  {elapsed_precise} eta {eta}  {msg}",
    );
    let log_every = args.log_every.unwrap_or(args.epochs.div_ceil(20)).max(1);
    let mut progress = Progress { bar, log_every, quiet: args.quiet, json: args.json, run, error: None };
    if !args.json && !args.quiet {
        outln!(
            "training {} on {source}: {} parameters, arena {} bytes, {} train / {} val samples, batch {batch}, {} lr {:e}{}",
            cfg.type_name(),
            group(param_count),
            group(arena_bytes),
            train.len(),
            val.len(),
            optimizer.name(),
            optimizer.lr(),
            match &logdir {
                Some(d) if done > 0 => format!("; resuming {} after epoch {done}", d.display()),
                Some(d) => format!("; logging to {}", d.display()),
                None => String::new(),
            }
        );
    }
    let result = trainer.fit(train, Some(val), &mut loader, &mut progress);
    progress.bar.finish_and_clear();
    let mut summary = result.map_err(|e| match (&logdir, progress.run.as_ref().and_then(|r| r.best)) {
        (Some(d), Some((val, epoch))) => format!(
            "{e}. Nothing was saved from the diverged epoch: {} holds the model of epoch {} and its optimizer state, \
             {} the best model (epoch {epoch}, val {val:.4e})",
            d.join("checkpoint.safetensors").display(),
            trainer.epochs_done(),
            d.join("best.safetensors").display(),
        ),
        _ => e.to_string(),
    })?;
    if let Some(err) = progress.error {
        return Err(err);
    }
    if let Some(last) = finished {
        // Training had finished before the resume: the summary is the last epoch's row.
        let (train, val, moe) = last.unwrap_or((f32::NAN, None, None));
        (summary.epochs, summary.final_train_loss, summary.final_val_loss) = (args.epochs, train, val);
        summary.final_moe = moe;
    }
    let best = progress.run.as_ref().map_or(summary.best_val.map(|(v, e)| (v, e + 1)), |r| r.best);
    let wall = start.elapsed().as_secs_f64();
    let outcome = Outcome {
        cfg,
        optimizer,
        schedule,
        batch,
        param_count,
        arena_bytes,
        summary,
        best,
        data: source,
        sizes: (train.len(), val.len()),
        logdir: logdir.clone(),
        events: progress.run.as_ref().map(|r| r.events.path().to_path_buf()),
        wall,
    };
    if let Some(run) = &progress.run {
        let net = trainer.net();
        let mut buf = vec![0u8; net.checkpoint_len().map_err(|e| e.to_string())?];
        let n = net.save_checkpoint(&mut buf).map_err(|e| e.to_string())?;
        run.dir.write_atomic("model.safetensors", &buf[..n])?;
    }
    then(trainer.net(), val, &outcome)
}

/// Flags that may differ between a run and its resumption: where and how it reports, and how
/// long it trains.
const RESUME_MAY_CHANGE: &[&str] =
    &["logdir", "resume", "epochs", "quiet", "json", "log_every", "plot_every"];

/// `train --logdir DIR --resume`: the flags of the run in DIR, read back from the command line its
/// `config.json` recorded, with this invocation's `--epochs` and reporting flags. A model or
/// training flag given here that contradicts the run's is an error naming it and both values.
/// `None` when DIR holds no `config.json` and flags are given (a run killed before it wrote
/// anything starts again from them).
fn original_args(
    args: &TrainArgs,
    m: &clap::ArgMatches,
    dir: &std::path::Path,
) -> Result<Option<TrainArgs>, String> {
    use clap::parser::ValueSource;
    use clap::{CommandFactory, FromArgMatches};
    let given = crate::config::given_flags::<TrainArgs>(m);
    let path = dir.join("config.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Killed before it wrote anything: it starts again, from the flags given here.
            return if given.iter().any(|(id, _)| !RESUME_MAY_CHANGE.contains(&id.as_str())) {
                Ok(None)
            } else {
                Err(format!(
                    "--resume: {} holds no config.json (the run never started): give the run's flags",
                    dir.display()
                ))
            };
        }
        Err(e) => return Err(format!("--resume: cannot read {}: {e}", path.display())),
    };
    let unreadable = || format!("--resume: {} does not record the run's command line", path.display());
    let config: serde_json::Value = serde_json::from_str(&text).map_err(|_| unreadable())?;
    let command: Vec<String> = config["command"]
        .as_array()
        .ok_or_else(unreadable)?
        .iter()
        .map(|v| v.as_str().map(str::to_string).ok_or_else(unreadable))
        .collect::<Result<_, _>>()?;
    let top = crate::Cli::command().try_get_matches_from(&command).map_err(|e| {
        format!("--resume: the command line in {} no longer parses: {}", path.display(), e.kind())
    })?;
    let Some(("train", was)) = top.subcommand() else {
        return Err(format!(
            "--resume: {} was written by another command than `regkern train`; resume it with its flags",
            path.display()
        ));
    };
    let mut original = TrainArgs::from_arg_matches(was)
        .map_err(|e| format!("--resume: {}: {}", path.display(), e.kind()))?;
    for (id, long) in &given {
        let id = id.as_str();
        if RESUME_MAY_CHANGE.contains(&id) {
            continue;
        }
        let raw = |x: &clap::ArgMatches| -> Vec<String> {
            x.try_get_raw(id)
                .ok()
                .flatten()
                .map_or(Vec::new(), |v| v.map(|s| s.to_string_lossy().into_owned()).collect())
        };
        let (here, there) = (raw(m), raw(was));
        // 1e-3 and 0.001 are the same value (switches read "true" or "false").
        let number = |v: &[String]| v.iter().map(|s| s.parse::<f64>().ok()).collect::<Option<Vec<_>>>();
        if here != there && number(&here).is_none_or(|a| Some(a) != number(&there)) {
            let shown = |v: &[String]| if v.is_empty() { "unset".to_string() } else { v.join(",") };
            return Err(format!(
                "--resume: --{long} {} contradicts the run in {}, trained with --{long} {} (resume with \
                 --logdir alone, or start a new run)",
                shown(&here),
                dir.display(),
                shown(&there),
            ));
        }
    }
    original.logdir = args.logdir.clone();
    original.resume = true;
    // This invocation's --epochs, else the run's planned end (config.json's `epochs`, which a
    // resume with a larger --epochs moves).
    if m.value_source("epochs") == Some(ValueSource::CommandLine) {
        original.epochs = args.epochs;
    } else if let Some(planned) = config["epochs"].as_u64().and_then(|e| usize::try_from(e).ok()) {
        original.epochs = planned;
    }
    // How this invocation prints is its own; the run's plots and log lines keep their rhythm
    // unless given again.
    (original.quiet, original.json) = (args.quiet, args.json);
    original.log_every = args.log_every.or(original.log_every);
    original.plot_every = args.plot_every.or(original.plot_every);
    Ok(Some(original))
}

/// A checkpoint error for the user: the file, the error, and the tensor it is about (errors
/// about a tensor give the offset of its name).
pub fn checkpoint_error(path: &dyn std::fmt::Display, bytes: &[u8], e: regkern_core::Error) -> String {
    if let regkern_core::Error::BadCheckpoint { offset, .. } = e {
        let name =
            Header::parse(bytes).ok().and_then(|h| h.tensor_at(offset)).and_then(|n| n.decode::<128>());
        if let Some(name) = name {
            return format!("{path}: {e}, in tensor {name:?}");
        }
    }
    format!("{path}: {e}")
}

/// Restore the training checkpoint of run directory `dir` into `trainer`, after checking it is of the same
/// model and trained at most `epochs` (a run trained to the end is summarised again); keep
/// `metrics.csv` up to the checkpoint. Returns what it kept: the best validation loss so far and
/// the last row.
fn resume(
    trainer: &mut Trainer<'_>,
    dir: &std::path::Path,
    cfg: &ModelConfig,
    epochs: usize,
) -> Result<crate::logdir::Kept, String> {
    let path = dir.join("checkpoint.safetensors");
    let bytes = std::fs::read(&path).map_err(|e| format!("--resume: cannot read {}: {e}", path.display()))?;
    let header = Header::parse(&bytes).map_err(|e| checkpoint_error(&path.display(), &bytes, e))?;
    let saved = header.config().map_err(|e| checkpoint_error(&path.display(), &bytes, e))?;
    if &saved != cfg {
        let what = if saved.type_name() == cfg.type_name() {
            format!("a {} of another shape or config than these flags give", saved.type_name())
        } else {
            format!("a {} model, not a {}", saved.type_name(), cfg.type_name())
        };
        return Err(format!(
            "--resume: {} holds {what} (resume with --logdir alone: the run's flags are in its config.json)",
            path.display()
        ));
    }
    let progress =
        trainer.load_checkpoint(&bytes).map_err(|e| checkpoint_error(&path.display(), &bytes, e))?;
    if progress.epochs as usize > epochs {
        return Err(format!(
            "--resume: {} already trained {} epochs, more than --epochs {epochs}",
            dir.display(),
            progress.epochs
        ));
    }
    if progress.epochs as usize == epochs && dir.join("summary.json").exists() {
        // Finished (perhaps killed after its summary, before it exited): the summary is made
        // again from the checkpoint, so a script that resumes until success ends.
        errln!(
            "note: {} already trained {} epochs: nothing left to train (pass a larger --epochs to continue)",
            dir.display(),
            progress.epochs
        );
    }
    crate::logdir::truncate_metrics(dir, progress.epochs as usize)
}

/// Train the configured model and print the summary (or JSON); autoregressive models also
/// report free-running generation on the validation set, encoder-decoders greedy decoding. With
/// a run directory, the summary is also written to `summary.json`.
pub fn run(args: &TrainArgs, m: &clap::ArgMatches) -> Result<(), String> {
    let resumed;
    let args = match (&args.logdir, args.resume) {
        (Some(dir), true) => match original_args(args, m, dir)? {
            Some(original) => {
                resumed = original;
                &resumed
            }
            None => args,
        },
        _ => args,
    };
    train_then(args, false, |net, val, outcome| {
        let task = args.model.task();
        let free = if task.autoregressive() {
            Some(crate::generate::free_running_mse(net, val, args.model.kv_cache_dtype(false).is_some())?)
        } else {
            None
        };
        let greedy = if task.seq2seq() { Some(crate::generate::greedy_mse(net, val)?) } else { None };
        let summary = summary_json(args, outcome, free, greedy.as_ref());
        if let Some(dir) = &outcome.logdir {
            crate::logdir::write_atomic(
                &dir.join("summary.json"),
                format!("{}\n", serde_json::to_string_pretty(&summary).expect("a Value serialises"))
                    .as_bytes(),
            )?;
        }
        if args.json {
            outln!("{summary}");
        } else {
            print_summary(outcome, free, greedy.as_ref());
        }
        Ok(())
    })
}

/// A float flag's value as JSON in the digits it was written with: the shortest decimal that
/// reads back as the same f32 (`--lr 0.001` gives 0.001, not its f64 widening
/// 0.0010000000474974513); null when not finite, which JSON cannot hold.
fn decimal(x: f32) -> serde_json::Value {
    match x.to_string().parse::<f64>() {
        Ok(v) if v.is_finite() => json!(v),
        _ => serde_json::Value::Null,
    }
}

/// The resolved config, as `config.json` and the summary's `config` hold it.
fn config_json(
    args: &TrainArgs,
    cfg: &ModelConfig,
    optimizer: &Optimizer,
    schedule: &Schedule,
    batch: usize,
    data: &str,
) -> serde_json::Value {
    let moe = |m: Option<regkern_core::MoeConfig>| {
        m.map(|m| {
            json!({
                "num_experts": m.num_experts,
                "topk": m.top_k,
                "capacity": match m.capacity { regkern_core::Capacity::Absolute(c) => json!(c), _ => json!(null) },
                "capacity_factor": match m.capacity { regkern_core::Capacity::Factor(f) => decimal(f), _ => json!(null) },
                "alpha": decimal(m.alpha),
            })
        })
    };
    // What a transformer and both stacks of an encoder-decoder share.
    let stack = |t: &regkern_core::TransformerConfig| {
        json!({
            "moe": moe(t.moe),
            "attention_type": t.attention.name(),
            "num_heads": t.num_heads,
            "num_groups": t.kv_heads(),
            "embed_dim": t.embed_dim,
            "ffn_dim": t.ffn_dim,
            "max_seq_len": t.max_seq_len,
            "input_dim": t.input_dim,
            "output_dim": t.output_dim,
        })
    };
    json!({
        "type": cfg.type_name(),
        "task": if args.data.is_some() { json!(null) } else { json!(args.model.task().name()) },
        "data": data,
        "latent_dims": match cfg {
            ModelConfig::Mlp(m) => json!(m.latent_dims.as_slice()),
            _ => json!(null),
        },
        "custom_act": match cfg {
            ModelConfig::Mlp(m) => json!(m.act.name()),
            _ => json!(null),
        },
        "transformer": match cfg {
            ModelConfig::Transformer(t) => {
                let mut v = stack(t);
                v["autoregressive"] = json!(t.autoregressive);
                v["num_layers"] = json!(t.num_layers);
                v
            }
            _ => json!(null),
        },
        "encoder_decoder": match cfg {
            ModelConfig::EncoderDecoder(e) => {
                let mut v = stack(&e.encoder());
                v["num_encoder_layers"] = json!(e.num_encoder_layers);
                v["num_decoder_layers"] = json!(e.num_decoder_layers);
                v
            }
            _ => json!(null),
        },
        "epochs": args.epochs,
        "lr": decimal(optimizer.lr()),
        "optimizer": optimizer.name(),
        "momentum": decimal(args.opt.momentum),
        "weight_decay": decimal(args.opt.weight_decay),
        "scheduler": schedule.name(),
        "batch_size": batch,
        "seed": args.seed,
        "train_size": args.train_size,
        "val_size": args.val_size,
        "clip_grad_norm": args.clip_grad_norm.map(decimal),
        "command": std::env::args().collect::<Vec<_>>(),
    })
}

/// The summary: what `--json` prints and `summary.json` holds.
fn summary_json(
    args: &TrainArgs,
    o: &Outcome,
    free: Option<crate::generate::FreeRunning>,
    greedy: Option<&crate::generate::Greedy>,
) -> serde_json::Value {
    let (best, best_epoch) = o.best.unwrap_or((f32::NAN, 0));
    let s = &o.summary;
    json!({
        "config": config_json(args, &o.cfg, &o.optimizer, &o.schedule, o.batch, &o.data),
        "param_count": o.param_count,
        "arena_bytes": o.arena_bytes,
        "train_samples": o.sizes.0,
        "val_samples": o.sizes.1,
        "final_train_loss": s.final_train_loss,
        "final_val_loss": s.final_val_loss.unwrap_or(f32::NAN),
        "best_val_loss": best,
        "best_epoch": best_epoch,
        "epochs": s.epochs,
        "steps": s.steps,
        "wall_seconds": o.wall,
        "logdir": o.logdir.as_ref().map(|d| d.display().to_string()),
        "tensorboard_events": o.events.as_ref().map(|d| d.display().to_string()),
        "moe": s.final_moe.map(|(drop_rate, aux)| json!({
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
        "greedy_decode": greedy.map(|g| json!({
            "mse": g.mse,
            "kv_cache": g.kv_cache,
            "seconds": g.seconds,
            "example": {"source": g.example[0], "target": g.example[1], "decoded": g.example[2]},
        })),
    })
}

/// The human-readable summary.
fn print_summary(
    o: &Outcome,
    free: Option<crate::generate::FreeRunning>,
    greedy: Option<&crate::generate::Greedy>,
) {
    let s = &o.summary;
    let (best, best_epoch) = o.best.unwrap_or((f32::NAN, 0));
    outln!(
        "done: {} epochs, {} steps in {:.2} s — final train {:.4e}, final val {:.4e}, best val {best:.4e} (epoch {best_epoch})",
        s.epochs,
        group(s.steps as usize),
        o.wall,
        s.final_train_loss,
        s.final_val_loss.unwrap_or(f32::NAN),
    );
    if let Some(f) = free {
        outln!(
            "free-running generation on the validation set (prompt {}, generate {}, {}): MSE {:.4e}",
            f.prompt,
            f.steps,
            f.kv_cache.map_or_else(|| "no KV cache".to_string(), |d| format!("{d} KV cache")),
            f.mse
        );
    }
    if let Some(g) = greedy {
        let fmt = crate::generate::fmt_values;
        outln!(
            "greedy decoding of the validation set ({}): MSE {:.4e} in {:.2} s",
            g.kv_cache.map_or_else(|| "no caches".to_string(), |d| format!("{d} KV cache")),
            g.mse,
            g.seconds
        );
        outln!("validation sequence 0:");
        outln!("  source  {}", fmt(&g.example[0]));
        outln!("  target  {}", fmt(&g.example[1]));
        outln!("  decoded {}", fmt(&g.example[2]));
    }
    if let Some(d) = &o.logdir {
        outln!("run directory: {} (tensorboard --logdir {})", d.display(), d.display());
    }
}
