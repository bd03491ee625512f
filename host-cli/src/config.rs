//! Flags shared by `train` and `plan`, spelled as the seed's `main.py` spells them
//! (`--latent_dims`, `--custom_act`, …) with kebab-case aliases, and their resolution into
//! core's config types. Every check that can fail happens here or in core's `plan`, before
//! any memory exists.

use clap::{Args, ValueEnum};

use crate::data::{Layout, Shape};
use regkern_core::layers::KvDtype;
use regkern_core::models::MAX_HIDDEN;
use regkern_core::{
    Activation, AttentionType, Capacity, EncoderDecoderConfig, LinearConfig, MlpConfig, ModelConfig,
    MoeConfig, Optimizer, Schedule, Task, TransformerConfig,
};

/// `--type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ModelType {
    /// Linear regression on the `linear` task.
    Linear,
    /// MLP on the `nlinear` task.
    Nlinear,
    /// Transformer regression on the `seqsum` task.
    Transformer,
}

/// `--kv_cache`: the KV cache's storage type, or none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum KvArg {
    /// 32-bit floats: exact.
    F32,
    /// IEEE half precision: half the bytes.
    F16,
    /// bfloat16: half the bytes, f32's range.
    Bf16,
    /// No cache: every step re-runs the context.
    Off,
}

/// `--attention_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AttnName {
    /// Multi-head attention (num_groups ignored).
    Mha,
    /// Multi-query attention: one shared key/value head.
    Mqa,
    /// Grouped-query attention: num_groups key/value heads.
    Gqa,
}

/// `--optimizer`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OptName {
    /// Adam (β 0.9/0.999, eps 1e-8).
    Adam,
    /// SGD (optionally with `--momentum`).
    Sgd,
    /// RMSprop (α 0.99, eps 1e-8).
    Rmsprop,
}

/// `--custom_act`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ActName {
    /// max(x, 0)
    Relu,
    /// tanh(x)
    Tanh,
    /// x·Φ(x), exact erf form
    Gelu,
}

/// `--scheduler`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SchedName {
    /// The base rate throughout.
    Constant,
    /// × gamma every `--step_size` epochs.
    Step,
    /// × gamma every epoch.
    Exponential,
    /// Cosine annealing to `--min_lr` over the run.
    Cosine,
    /// Linear warmup over `--warmup_steps`, then cosine.
    #[value(name = "warmup_cosine", alias = "warmup-cosine")]
    WarmupCosine,
}

/// `--kernels`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum KernelsArg {
    /// The fastest gemm kernels this CPU has (AVX-512, AVX2+FMA or portable).
    #[default]
    Auto,
    /// The portable kernels: the same bits as the firmware on a Cortex-M4F.
    Portable,
}

impl KernelsArg {
    /// The core's choice.
    pub fn kernels(self) -> regkern_core::Kernels {
        match self {
            KernelsArg::Auto => regkern_core::Kernels::Auto,
            KernelsArg::Portable => regkern_core::Kernels::Portable,
        }
    }
}

/// What model to build.
#[derive(Args, Clone, Debug)]
pub struct ModelArgs {
    /// Model type.
    #[arg(long = "type", value_enum, default_value = "linear")]
    pub model_type: ModelType,
    /// Hidden layer widths of the MLP, comma-separated.
    #[arg(long = "latent_dims", alias = "latent-dims", default_value = "128,64,32")]
    pub latent_dims: String,
    /// Activation between hidden layers.
    #[arg(long = "custom_act", alias = "custom-act", value_enum, default_value = "relu")]
    pub custom_act: ActName,
    /// Samples per batch [default: 64 for linear and nlinear, 32 for transformer].
    #[arg(long = "batch_size", alias = "batch-size")]
    pub batch_size: Option<usize>,
    #[command(flatten)]
    pub transformer: TransformerArgs,
    /// Autoregressive transformer: predict the next value at every position (task `sine`).
    #[arg(long, conflicts_with = "encoderdecoder")]
    pub autoregressive: bool,
    /// Encoder-decoder transformer for sequence-to-sequence regression (task `reverse`); greedy
    /// decoding uses an f32 KV cache unless --kv_cache says otherwise.
    #[arg(long)]
    pub encoderdecoder: bool,
    /// Encoder blocks (--encoderdecoder).
    #[arg(long = "num_encoder_layers", alias = "num-encoder-layers", default_value_t = 2)]
    pub num_encoder_layers: usize,
    /// Decoder blocks (--encoderdecoder).
    #[arg(long = "num_decoder_layers", alias = "num-decoder-layers", default_value_t = 2)]
    pub num_decoder_layers: usize,
    /// Generate through a KV cache (autoregressive models): an f32 cache unless --kv_cache says.
    #[arg(long = "use_kv_cache", alias = "use-kv-cache")]
    pub use_kv_cache: bool,
    /// KV cache storage for generation and greedy decoding: f32, f16, bf16 or off.
    #[arg(long = "kv_cache", alias = "kv-cache", value_enum)]
    pub kv_cache: Option<KvArg>,
    /// User data (`train --data`): features (or sequence values) per token.
    #[arg(long = "input_dim", alias = "input-dim", default_value_t = 1)]
    pub input_dim: usize,
    /// User data: targets per sample (or per token, for sequence outputs).
    #[arg(long = "output_dim", alias = "output-dim", default_value_t = 1)]
    pub output_dim: usize,
    /// User data for an encoder-decoder: target positions per row [default: the source's].
    #[arg(long = "target_len", alias = "target-len")]
    pub target_len: Option<usize>,
    /// Gemm kernels: `auto` (the CPU's fastest) or `portable` (bit-identical to the firmware).
    #[arg(long, value_enum, default_value = "auto")]
    pub kernels: KernelsArg,
    /// Tokens per sequence of the synthetic task (transformers) [default: 32]. Activations are
    /// planned for this length; --max_seq_len sizes only the positional embedding.
    #[arg(long = "seq_len", alias = "seq-len")]
    pub seq_len: Option<usize>,
    /// Training keeps less between the passes and recomputes the rest in backward (a
    /// transformer's attention probabilities): the same results, less memory, slower steps.
    #[arg(long = "lean_memory", alias = "lean-memory")]
    pub lean_memory: bool,
}

/// Transformer flags (SPEC §3.3 defaults: the seed's `TransformerModelConfig` example).
#[derive(Args, Clone, Debug)]
pub struct TransformerArgs {
    /// Attention: mha, mqa or gqa.
    #[arg(long = "attention_type", alias = "attention-type", value_enum, default_value = "gqa")]
    pub attention_type: AttnName,
    /// Query heads H (must divide embed_dim).
    #[arg(long = "num_heads", alias = "num-heads", default_value_t = 8)]
    pub num_heads: usize,
    /// Key/value groups G for gqa (must divide num_heads).
    #[arg(long = "num_groups", alias = "num-groups", default_value_t = 4)]
    pub num_groups: usize,
    /// Model width E.
    #[arg(long = "embed_dim", alias = "embed-dim", default_value_t = 64)]
    pub embed_dim: usize,
    /// FFN hidden width F (the seed's `ffn_latent_dim`).
    #[arg(long = "ffn_dim", aliases = ["ffn-dim", "ffn_latent_dim", "ffn-latent-dim"], default_value_t = 128)]
    pub ffn_dim: usize,
    /// Transformer blocks.
    #[arg(long = "num_layers", alias = "num-layers", default_value_t = 2)]
    pub num_layers: usize,
    /// Longest sequence (rows of pos_embed).
    #[arg(long = "max_seq_len", alias = "max-seq-len", default_value_t = 128)]
    pub max_seq_len: usize,
    /// Mixture-of-Experts FFNs in every block (the seed's `use_moe`).
    #[arg(long, aliases = ["use_moe", "use-moe"])]
    pub moe: bool,
    /// MoE: experts per block.
    #[arg(long = "num_experts", alias = "num-experts", default_value_t = 8)]
    pub num_experts: usize,
    /// MoE: experts per token.
    #[arg(long, default_value_t = 2)]
    pub topk: usize,
    /// MoE: assignments each expert takes per forward call (overrides --capacity_factor).
    #[arg(long)]
    pub capacity: Option<usize>,
    /// MoE: capacity = ceil(factor · tokens in the call · topk / num_experts).
    #[arg(
        long = "capacity_factor",
        alias = "capacity-factor",
        default_value_t = 1.25,
        allow_negative_numbers = true
    )]
    pub capacity_factor: f32,
    /// MoE: weight of the load-balancing loss.
    #[arg(long, default_value_t = 0.01, allow_negative_numbers = true)]
    pub alpha: f32,
}

impl TransformerArgs {
    /// The core config for a task with `input_dim` features per token and `output_dim` outputs.
    pub fn config(
        &self,
        input_dim: usize,
        output_dim: usize,
        autoregressive: bool,
        kv_cache: Option<KvDtype>,
    ) -> TransformerConfig {
        TransformerConfig {
            input_dim,
            output_dim,
            embed_dim: self.embed_dim,
            ffn_dim: self.ffn_dim,
            num_layers: self.num_layers,
            num_heads: self.num_heads,
            num_groups: self.num_groups,
            attention: match self.attention_type {
                AttnName::Mha => AttentionType::Mha,
                AttnName::Mqa => AttentionType::Mqa,
                AttnName::Gqa => AttentionType::Gqa,
            },
            max_seq_len: self.max_seq_len,
            ffn_act: Activation::Gelu,
            autoregressive,
            kv_cache,
            moe: self.moe.then(|| MoeConfig {
                num_experts: self.num_experts,
                top_k: self.topk,
                capacity: self.capacity.map_or(Capacity::Factor(self.capacity_factor), Capacity::Absolute),
                alpha: self.alpha,
            }),
        }
    }
}

/// How to optimise.
#[derive(Args, Clone, Debug)]
pub struct OptArgs {
    /// Optimizer.
    #[arg(long, value_enum, default_value = "adam")]
    pub optimizer: OptName,
    /// Learning rate.
    #[arg(long, default_value_t = 1e-3, allow_negative_numbers = true)]
    pub lr: f32,
    /// Momentum (sgd, rmsprop).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub momentum: f32,
    /// L2 weight decay.
    #[arg(
        long = "weight_decay",
        alias = "weight-decay",
        default_value_t = 0.0,
        allow_negative_numbers = true
    )]
    pub weight_decay: f32,
}

impl ModelArgs {
    /// The synthetic task of this model type.
    pub fn task(&self) -> Task {
        match self.model_type {
            ModelType::Linear => Task::Linear,
            ModelType::Nlinear => Task::Nlinear,
            ModelType::Transformer if self.autoregressive => Task::Sine,
            ModelType::Transformer if self.encoderdecoder => Task::Reverse,
            ModelType::Transformer => Task::Seqsum,
        }
    }

    /// The KV cache to plan: `--kv_cache` if given, else f32 with `--use_kv_cache` or when
    /// `on_by_default` (the `generate` command), else none.
    pub fn kv_cache_dtype(&self, on_by_default: bool) -> Option<KvDtype> {
        match self.kv_cache {
            Some(KvArg::F32) => Some(KvDtype::F32),
            Some(KvArg::F16) => Some(KvDtype::F16),
            Some(KvArg::Bf16) => Some(KvDtype::Bf16),
            Some(KvArg::Off) => None,
            None if self.use_kv_cache || on_by_default => Some(KvDtype::F32),
            None => None,
        }
    }

    /// `--batch_size`, or the type's default (SPEC §5).
    pub fn batch(&self) -> usize {
        self.batch_size.unwrap_or(match self.model_type {
            ModelType::Linear | ModelType::Nlinear => 64,
            ModelType::Transformer => 32,
        })
    }

    /// The core model config for data of `shape` (a synthetic task's, or a CSV file's), or a
    /// message saying which flag is wrong. `cache_by_default`: plan a KV cache unless
    /// `--kv_cache off` (the `generate` command). `source`: what the data is, for messages.
    pub fn model_config_for(
        &self,
        shape: &Shape,
        source: &str,
        cache_by_default: bool,
    ) -> Result<ModelConfig, String> {
        let task = self.task();
        if self.model_type != ModelType::Transformer && self.autoregressive {
            return Err("--autoregressive needs --type transformer".into());
        }
        if self.model_type != ModelType::Transformer && self.transformer.moe {
            return Err("--moe needs --type transformer".into());
        }
        if self.model_type != ModelType::Transformer && self.encoderdecoder {
            return Err("--encoderdecoder needs --type transformer".into());
        }
        // Greedy decoding is an encoder-decoder's inference, so it gets its caches by default.
        let kv_cache =
            if task.per_token() { self.kv_cache_dtype(cache_by_default || task.seq2seq()) } else { None };
        if !task.per_token() && (self.use_kv_cache || self.kv_cache.is_some_and(|k| k != KvArg::Off)) {
            return Err(
                "--use_kv_cache and --kv_cache need --type transformer with --autoregressive or --encoderdecoder"
                    .into(),
            );
        }
        let fits = |max_seq_len: usize| {
            let longest = shape.seq_len.max(if task.seq2seq() { shape.target_len } else { 0 });
            if longest > max_seq_len {
                return Err(format!(
                    "{source}'s sequences have {longest} tokens, more than --max_seq_len {max_seq_len}"
                ));
            }
            Ok(())
        };
        Ok(match self.model_type {
            ModelType::Linear => {
                ModelConfig::Linear(LinearConfig { n_in: shape.in_dim, n_out: shape.out_dim })
            }
            ModelType::Nlinear => {
                let dims = parse_dims(&self.latent_dims)?;
                let act = match self.custom_act {
                    ActName::Relu => Activation::Relu,
                    ActName::Tanh => Activation::Tanh,
                    ActName::Gelu => Activation::Gelu,
                };
                ModelConfig::Mlp(MlpConfig {
                    n_in: shape.in_dim,
                    latent_dims: dims,
                    n_out: shape.out_dim,
                    act,
                })
            }
            ModelType::Transformer if task.seq2seq() => {
                let t = self.transformer.config(shape.in_dim, shape.out_dim, false, kv_cache);
                let cfg =
                    EncoderDecoderConfig::from_stack(&t, self.num_encoder_layers, self.num_decoder_layers);
                cfg.validate().map_err(|e| e.to_string())?;
                fits(cfg.max_seq_len)?;
                ModelConfig::EncoderDecoder(cfg)
            }
            ModelType::Transformer => {
                let cfg =
                    self.transformer.config(shape.in_dim, shape.out_dim, task.autoregressive(), kv_cache);
                cfg.validate().map_err(|e| e.to_string())?;
                fits(cfg.max_seq_len)?;
                ModelConfig::Transformer(cfg)
            }
        })
    }

    /// The config on the synthetic task, for `plan`: a KV cache only when asked for.
    pub fn model_config(&self) -> Result<ModelConfig, String> {
        let task = self.task();
        let shape = Shape::of_task(task, self.task_seq_len()?);
        self.model_config_for(&shape, &format!("the {} task", task.name()), false)
    }

    /// Tokens per sequence of the synthetic task: `--seq_len`, or the task's default (32); 1 for
    /// the feature tasks, which refuse `--seq_len`.
    /// What training keeps between the passes (`--lean_memory`).
    pub fn memory(&self) -> regkern_core::Memory {
        if self.lean_memory { regkern_core::Memory::Lean } else { regkern_core::Memory::Fast }
    }

    pub fn task_seq_len(&self) -> Result<usize, String> {
        let task = self.task();
        match self.seq_len {
            None => Ok(task.seq_len()),
            Some(_) if !task.is_sequence() => Err("--seq_len needs --type transformer".into()),
            Some(0) => Err("--seq_len must be at least 1".into()),
            Some(n) => Ok(n),
        }
    }

    /// How CSV rows map to samples for this model (`train --data`).
    pub fn layout(&self) -> Layout {
        let task = self.task();
        let (in_dim, out_dim) = (self.input_dim, self.output_dim);
        if task.seq2seq() {
            Layout::Seq2Seq { in_dim, out_dim, target_len: self.target_len }
        } else if task.autoregressive() {
            Layout::Autoregressive { dim: in_dim }
        } else {
            Layout::PerSample { sequence: self.model_type == ModelType::Transformer, in_dim, out_dim }
        }
    }
}

impl OptArgs {
    /// The core optimizer with PyTorch defaults plus the given flags.
    pub fn optimizer(&self) -> Result<Optimizer, String> {
        let name = match self.optimizer {
            OptName::Adam => "adam",
            OptName::Sgd => "sgd",
            OptName::Rmsprop => "rmsprop",
        };
        let opt = Optimizer::from_name(name, self.lr).expect("every OptName is a core optimizer");
        let opt = if self.momentum == 0.0 {
            opt
        } else {
            opt.with_momentum(self.momentum).ok_or("--momentum applies to sgd and rmsprop, not adam")?
        };
        let opt = opt.with_weight_decay(self.weight_decay);
        opt.validate().map_err(|e| e.to_string())?;
        Ok(opt)
    }
}

/// The flags of `A` given on the command line in `m` (matches parsed with `A`'s flags): each
/// one's clap id and long name, in definition order. Groups and defaults are not flags given.
pub fn given_flags<A: Args>(m: &clap::ArgMatches) -> Vec<(String, String)> {
    use clap::parser::ValueSource;
    let cmd = A::augment_args(clap::Command::new("given"));
    cmd.get_arguments()
        .filter_map(|a| Some((a.get_id().as_str().to_string(), a.get_long()?.to_string())))
        .filter(|(id, _)| {
            m.try_contains_id(id).unwrap_or(false) && m.value_source(id) == Some(ValueSource::CommandLine)
        })
        .collect()
}

/// What a flag needs to mean anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Needs {
    /// `--type nlinear`.
    Mlp,
    /// `--type transformer`.
    Transformer,
    /// `--type transformer --moe`.
    Moe,
    /// `--type transformer --encoderdecoder`.
    EncoderDecoder,
    /// `--data FILE` (user data).
    Data,
    /// `--data FILE` with `--type transformer --encoderdecoder`.
    DataEncoderDecoder,
}

/// The model flags that apply to some models only, by clap id, with what each needs. The
/// switches that choose a model (`--autoregressive`, `--encoderdecoder`, `--moe`) and the KV cache
/// flags are checked where the config is resolved, with messages of their own.
const APPLIES_TO: &[(&str, Needs)] = &[
    ("latent_dims", Needs::Mlp),
    ("custom_act", Needs::Mlp),
    ("attention_type", Needs::Transformer),
    ("num_heads", Needs::Transformer),
    ("num_groups", Needs::Transformer),
    ("embed_dim", Needs::Transformer),
    ("ffn_dim", Needs::Transformer),
    ("num_layers", Needs::Transformer),
    ("max_seq_len", Needs::Transformer),
    ("seq_len", Needs::Transformer),
    ("num_experts", Needs::Moe),
    ("topk", Needs::Moe),
    ("capacity", Needs::Moe),
    ("capacity_factor", Needs::Moe),
    ("alpha", Needs::Moe),
    ("num_encoder_layers", Needs::EncoderDecoder),
    ("num_decoder_layers", Needs::EncoderDecoder),
    ("input_dim", Needs::Data),
    ("output_dim", Needs::Data),
    ("val_fraction", Needs::Data),
    ("header", Needs::Data),
    ("target_len", Needs::DataEncoderDecoder),
];

/// Refuse a flag given on the command line that the chosen model would ignore
/// (`--type linear --num_heads 3`), naming what it needs. `m`: the matches of `train`,
/// `generate` or `plan` (whose flags include [`ModelArgs`]).
pub fn refuse_inapplicable(m: &clap::ArgMatches) -> Result<(), String> {
    use clap::parser::ValueSource;
    let given = |id: &str| {
        m.try_contains_id(id).unwrap_or(false) && m.value_source(id) == Some(ValueSource::CommandLine)
    };
    let flag = |id: &str| m.try_get_one::<bool>(id).ok().flatten().copied().unwrap_or(false);
    let model = m.try_get_one::<ModelType>("model_type").ok().flatten().copied().unwrap_or(ModelType::Linear);
    let type_name = |t: ModelType| t.to_possible_value().map_or(String::new(), |v| v.get_name().to_string());
    let transformer = model == ModelType::Transformer;
    let data = m.try_get_one::<std::path::PathBuf>("data").ok().flatten().is_some();
    for &(id, needs) in APPLIES_TO {
        if !given(id) {
            continue;
        }
        let ok = match needs {
            Needs::Mlp => model == ModelType::Nlinear,
            Needs::Transformer => transformer,
            Needs::Moe => transformer && flag("moe"),
            Needs::EncoderDecoder => transformer && flag("encoderdecoder"),
            Needs::Data => data,
            Needs::DataEncoderDecoder => data && transformer && flag("encoderdecoder"),
        };
        if ok {
            continue;
        }
        let name = format!("--{id}");
        let chosen = type_name(model);
        return Err(match needs {
            Needs::Mlp => format!("{name} applies to --type nlinear (the MLP), not --type {chosen}"),
            Needs::Transformer => format!("{name} applies to --type transformer, not --type {chosen}"),
            Needs::Moe => format!("{name} needs --type transformer with --moe"),
            Needs::EncoderDecoder => format!("{name} needs --type transformer with --encoderdecoder"),
            Needs::Data => format!("{name} describes user data: it needs --data FILE"),
            Needs::DataEncoderDecoder => {
                format!("{name} needs --data FILE with --type transformer --encoderdecoder")
            }
        });
    }
    Ok(())
}

/// True for models with Mixture-of-Experts FFNs.
pub fn is_moe(cfg: &ModelConfig) -> bool {
    match cfg {
        ModelConfig::Transformer(t) => t.moe.is_some(),
        ModelConfig::EncoderDecoder(t) => t.moe.is_some(),
        ModelConfig::Linear(_) | ModelConfig::Mlp(_) => false,
    }
}

/// Parse `--latent_dims "128,64,32"`.
pub fn parse_dims(s: &str) -> Result<heapless::Vec<usize, MAX_HIDDEN>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("--latent_dims is empty: give hidden widths like \"128,64,32\"".into());
    }
    let mut dims = heapless::Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        let d: usize =
            part.parse().map_err(|_| format!("--latent_dims: {part:?} is not a positive whole number"))?;
        if d == 0 {
            return Err("--latent_dims: every width must be at least 1".into());
        }
        dims.push(d).map_err(|_| format!("--latent_dims: at most {MAX_HIDDEN} hidden layers"))?;
    }
    Ok(dims)
}

/// Scheduler flags.
#[derive(Args, Clone, Debug)]
pub struct SchedArgs {
    /// Learning-rate schedule.
    #[arg(long, value_enum, default_value = "constant")]
    pub scheduler: SchedName,
    /// Epochs between decays (step) [default: epochs / 3].
    #[arg(long = "step_size", alias = "step-size")]
    pub step_size: Option<usize>,
    /// Decay factor (step: 0.1, exponential: 0.95).
    #[arg(long, allow_negative_numbers = true)]
    pub gamma: Option<f32>,
    /// Warmup steps (warmup_cosine) [default: 5% of all steps].
    #[arg(long = "warmup_steps", alias = "warmup-steps")]
    pub warmup_steps: Option<usize>,
    /// Final learning rate (cosine, warmup_cosine).
    #[arg(long = "min_lr", alias = "min-lr", default_value_t = 0.0, allow_negative_numbers = true)]
    pub min_lr: f32,
}

impl SchedArgs {
    /// The core schedule for a run of `epochs` epochs of `steps_per_epoch` steps.
    pub fn schedule(&self, epochs: usize, steps_per_epoch: usize) -> Schedule {
        match self.scheduler {
            SchedName::Constant => Schedule::Constant,
            SchedName::Step => Schedule::Step {
                step_size: self.step_size.unwrap_or((epochs / 3).max(1)),
                gamma: self.gamma.unwrap_or(0.1),
            },
            SchedName::Exponential => Schedule::Exponential { gamma: self.gamma.unwrap_or(0.95) },
            SchedName::Cosine => Schedule::Cosine { min_lr: self.min_lr },
            SchedName::WarmupCosine => Schedule::WarmupCosine {
                warmup_steps: self.warmup_steps.unwrap_or((epochs * steps_per_epoch).div_ceil(20)),
                min_lr: self.min_lr,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latent_dims_parse_and_reject() {
        assert_eq!(parse_dims("128, 64,32").unwrap().as_slice(), &[128, 64, 32]);
        assert!(parse_dims("").unwrap_err().contains("empty"));
        assert!(parse_dims("64,0").unwrap_err().contains("at least 1"));
        assert!(parse_dims("64,x").unwrap_err().contains("not a positive"));
        assert!(parse_dims(&["8"; 17].join(",")).unwrap_err().contains("at most"));
    }
}
