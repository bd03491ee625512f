//! The C views of regkern's configs (`#[repr(C)]`, plain numbers and enums) and their
//! conversions into core's types. Every conversion checks what the C side can get wrong (an
//! unknown enum value, a count past a fixed capacity); core's `validate` checks the rest.

use regkern_core::layers::KvDtype;
use regkern_core::models::MAX_HIDDEN;
use regkern_core::optim::{Adam, RmsProp, Sgd};
use regkern_core::{
    Activation, AttentionType, Capacity, EncoderDecoderConfig, Error, LinearConfig, MlpConfig, Mode,
    ModelConfig, MoeConfig, Optimizer, Result, Schedule, TransformerConfig,
};

/// Most hidden layers of an MLP (`rk_mlp_config.latent_dims`).
pub const RK_MAX_HIDDEN: usize = 16;

const _: () = assert!(RK_MAX_HIDDEN == MAX_HIDDEN, "the C capacity must equal core's");

/// Which model a `rk_model_config` describes.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum rk_model_type {
    /// Linear regression (`--type linear`): `config.linear`.
    RK_MODEL_LINEAR = 1,
    /// Multi-layer perceptron (`--type nlinear`): `config.mlp`.
    RK_MODEL_MLP = 2,
    /// Transformer, regression or autoregressive (`--type transformer`): `config.transformer`.
    RK_MODEL_TRANSFORMER = 3,
    /// Encoder-decoder transformer (`--encoderdecoder`): `config.encdec`.
    RK_MODEL_ENCODER_DECODER = 4,
}

/// Activation between hidden layers, or of the transformer FFN.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum rk_activation {
    /// max(x, 0).
    RK_ACT_RELU = 0,
    /// tanh(x).
    RK_ACT_TANH = 1,
    /// x·Φ(x), the exact erf form.
    RK_ACT_GELU = 2,
}

/// Attention layout: multi-head, multi-query or grouped-query.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum rk_attention {
    /// One key/value head per query head.
    RK_ATTN_MHA = 0,
    /// One key/value head shared by all query heads.
    RK_ATTN_MQA = 1,
    /// `num_groups` key/value heads.
    RK_ATTN_GQA = 2,
}

/// Storage of the KV cache for generation and greedy decoding.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum rk_kv_cache {
    /// No cache: generation recomputes the context.
    RK_KV_NONE = 0,
    /// 32-bit floats.
    RK_KV_F32 = 1,
    /// IEEE half precision (half the bytes).
    RK_KV_F16 = 2,
    /// bfloat16 (half the bytes, f32's range).
    RK_KV_BF16 = 3,
}

/// Linear regression: `linear.weight [n_out, n_in]`, `linear.bias [n_out]`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct rk_linear_config {
    /// Input features.
    pub n_in: u32,
    /// Outputs.
    pub n_out: u32,
}

/// MLP: `n_hidden` hidden layers of widths `latent_dims[0..n_hidden]`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct rk_mlp_config {
    /// Input features.
    pub n_in: u32,
    /// Hidden layers used (at most `RK_MAX_HIDDEN`).
    pub n_hidden: u32,
    /// Their widths.
    pub latent_dims: [u32; RK_MAX_HIDDEN],
    /// Outputs.
    pub n_out: u32,
    /// Activation between hidden layers (an `rk_activation`).
    pub act: u32,
}

/// Transformer attention, FFN and MoE settings shared by `rk_transformer_config` and
/// `rk_encdec_config`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct rk_stack_config {
    /// Features per input token.
    pub input_dim: u32,
    /// Outputs per sequence (regression) or per token.
    pub output_dim: u32,
    /// Model width E.
    pub embed_dim: u32,
    /// FFN hidden width F.
    pub ffn_dim: u32,
    /// Query heads H (must divide embed_dim).
    pub num_heads: u32,
    /// Key/value groups G for GQA (must divide num_heads).
    pub num_groups: u32,
    /// MHA, MQA or GQA (an `rk_attention`).
    pub attention: u32,
    /// Longest sequence (rows of `pos_embed`).
    pub max_seq_len: u32,
    /// FFN activation (an `rk_activation`).
    pub ffn_act: u32,
    /// KV cache for generation / greedy decoding (an `rk_kv_cache`).
    pub kv_cache: u32,
    /// Non-zero: Mixture-of-Experts FFNs.
    pub moe: u8,
    /// MoE: experts per block.
    pub num_experts: u32,
    /// MoE: experts per token.
    pub topk: u32,
    /// MoE: assignments each expert takes per forward call; 0 = use `capacity_factor`.
    pub capacity: u32,
    /// MoE: capacity = ceil(factor · tokens · topk / num_experts) when `capacity` is 0.
    pub capacity_factor: f32,
    /// MoE: weight of the load-balancing loss.
    pub alpha: f32,
}

/// Transformer (`--type transformer`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct rk_transformer_config {
    /// Widths, attention, FFN, MoE and cache.
    pub stack: rk_stack_config,
    /// Transformer blocks.
    pub num_layers: u32,
    /// Non-zero: causal attention and a prediction at every position (next-value models).
    pub autoregressive: u8,
}

/// Encoder-decoder transformer (`--type transformer --encoderdecoder`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct rk_encdec_config {
    /// Widths, attention, FFN, MoE and the decoder's cache, shared by both stacks.
    pub stack: rk_stack_config,
    /// Encoder blocks.
    pub num_encoder_layers: u32,
    /// Decoder blocks.
    pub num_decoder_layers: u32,
}

/// The per-type configs; `rk_model_config.type` says which is meant.
#[repr(C)]
#[derive(Clone, Copy)]
pub union rk_model_config_u {
    /// `RK_MODEL_LINEAR`.
    pub linear: rk_linear_config,
    /// `RK_MODEL_MLP`.
    pub mlp: rk_mlp_config,
    /// `RK_MODEL_TRANSFORMER`.
    pub transformer: rk_transformer_config,
    /// `RK_MODEL_ENCODER_DECODER`.
    pub encdec: rk_encdec_config,
}

/// A model config: its kind (an `rk_model_type`) and the matching member of `u`. Start from
/// `rk_model_config_default(kind)`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct rk_model_config {
    /// An `rk_model_type`: which member of `u` holds the config.
    pub kind: u32,
    /// The config.
    pub u: rk_model_config_u,
}

/// Optimizer kinds.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum rk_optimizer_kind {
    /// SGD (momentum, dampening, Nesterov, weight decay).
    RK_OPT_SGD = 0,
    /// Adam (beta1, beta2, eps, weight decay).
    RK_OPT_ADAM = 1,
    /// RMSprop (alpha, eps, momentum, centered, weight decay).
    RK_OPT_RMSPROP = 2,
}

/// An optimizer and its hyperparameters (PyTorch's formulas and defaults; fields that do not
/// apply to `kind` are ignored). Start from `rk_optimizer_default(kind, lr)`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct rk_optimizer {
    /// Which optimizer (an `rk_optimizer_kind`).
    pub kind: u32,
    /// Learning rate.
    pub lr: f32,
    /// SGD, RMSprop: momentum factor.
    pub momentum: f32,
    /// SGD: dampening.
    pub dampening: f32,
    /// SGD: non-zero for Nesterov momentum.
    pub nesterov: u8,
    /// All: L2 penalty.
    pub weight_decay: f32,
    /// Adam: first-moment decay.
    pub beta1: f32,
    /// Adam: second-moment decay.
    pub beta2: f32,
    /// Adam, RMSprop: added to the denominator.
    pub eps: f32,
    /// RMSprop: smoothing constant.
    pub alpha: f32,
    /// RMSprop: non-zero to normalise by the centered second moment.
    pub centered: u8,
}

/// What the model's memory is planned for.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct rk_mode {
    /// Non-zero: training (gradients, optimizer state, saved activations); zero: inference only.
    pub training: u8,
    /// Most samples per call.
    pub max_batch: u32,
    /// Training: the optimizer (sizes its state). Ignored for inference.
    pub optimizer: rk_optimizer,
    /// Transformers: the longest sequence the calls will feed (sizes activations and the KV
    /// cache; `max_seq_len` sizes only the positional embedding). 0: `max_seq_len`.
    pub seq_len: u32,
    /// Training: non-zero keeps less between the passes and recomputes the rest in backward (a
    /// transformer's attention probabilities): the same results, less memory, more arithmetic.
    /// Zero: keep everything backward reads (the fastest step).
    pub lean_memory: u8,
}

/// Learning-rate schedule kinds.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum rk_schedule_kind {
    /// The base rate throughout.
    RK_SCHED_CONSTANT = 0,
    /// × gamma every `step_size` epochs.
    RK_SCHED_STEP = 1,
    /// × gamma every epoch.
    RK_SCHED_EXPONENTIAL = 2,
    /// Cosine from the base rate to `min_lr` over `total_steps`.
    RK_SCHED_COSINE = 3,
    /// Linear warmup over `warmup_steps`, then cosine to `min_lr`.
    RK_SCHED_WARMUP_COSINE = 4,
}

/// How `rk_train_step` sets the learning rate and clips gradients.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct rk_schedule {
    /// Which schedule (an `rk_schedule_kind`).
    pub kind: u32,
    /// STEP: epochs between decays.
    pub step_size: u32,
    /// STEP, EXPONENTIAL: decay factor.
    pub gamma: f32,
    /// COSINE, WARMUP_COSINE: the rate at the last step.
    pub min_lr: f32,
    /// WARMUP_COSINE: steps of linear warmup.
    pub warmup_steps: u32,
    /// Optimizer steps per epoch (for STEP and EXPONENTIAL, which change per epoch).
    pub steps_per_epoch: u32,
    /// Steps in the whole run (for the cosine schedules).
    pub total_steps: u64,
    /// Clip the gradient to this global L2 norm; 0 = no clipping.
    pub clip_grad_norm: f32,
}

fn bad(field: &'static str, reason: &'static str) -> Error {
    Error::BadConfig { field, reason }
}

fn us(v: u32) -> usize {
    v as usize
}

fn activation(a: u32, field: &'static str) -> Result<Activation> {
    match a {
        0 => Ok(Activation::Relu),
        1 => Ok(Activation::Tanh),
        2 => Ok(Activation::Gelu),
        _ => Err(bad(field, "is not an rk_activation")),
    }
}

impl rk_stack_config {
    fn to_core(self, layers: usize, autoregressive: bool) -> Result<TransformerConfig> {
        let attention = match self.attention {
            0 => AttentionType::Mha,
            1 => AttentionType::Mqa,
            2 => AttentionType::Gqa,
            _ => return Err(bad("attention", "is not an rk_attention")),
        };
        let kv_cache = match self.kv_cache {
            0 => None,
            1 => Some(KvDtype::F32),
            2 => Some(KvDtype::F16),
            3 => Some(KvDtype::Bf16),
            _ => return Err(bad("kv_cache", "is not an rk_kv_cache")),
        };
        let moe = (self.moe != 0).then(|| MoeConfig {
            num_experts: us(self.num_experts),
            top_k: us(self.topk),
            capacity: if self.capacity > 0 {
                Capacity::Absolute(us(self.capacity))
            } else {
                Capacity::Factor(self.capacity_factor)
            },
            alpha: self.alpha,
        });
        Ok(TransformerConfig {
            input_dim: us(self.input_dim),
            output_dim: us(self.output_dim),
            embed_dim: us(self.embed_dim),
            ffn_dim: us(self.ffn_dim),
            num_layers: layers,
            num_heads: us(self.num_heads),
            num_groups: us(self.num_groups),
            attention,
            max_seq_len: us(self.max_seq_len),
            ffn_act: activation(self.ffn_act, "ffn_act")?,
            autoregressive,
            kv_cache,
            moe,
        })
    }

    fn from_core(t: &TransformerConfig) -> Self {
        let m = t.moe.unwrap_or_default();
        rk_stack_config {
            input_dim: t.input_dim as u32,
            output_dim: t.output_dim as u32,
            embed_dim: t.embed_dim as u32,
            ffn_dim: t.ffn_dim as u32,
            num_heads: t.num_heads as u32,
            num_groups: t.num_groups as u32,
            attention: match t.attention {
                AttentionType::Mha => rk_attention::RK_ATTN_MHA,
                AttentionType::Mqa => rk_attention::RK_ATTN_MQA,
                AttentionType::Gqa => rk_attention::RK_ATTN_GQA,
            } as u32,
            max_seq_len: t.max_seq_len as u32,
            ffn_act: rk_activation::RK_ACT_GELU as u32,
            kv_cache: rk_kv_cache::RK_KV_NONE as u32,
            moe: u8::from(t.moe.is_some()),
            num_experts: m.num_experts as u32,
            topk: m.top_k as u32,
            capacity: match m.capacity {
                Capacity::Absolute(c) => c as u32,
                Capacity::Factor(_) => 0,
            },
            capacity_factor: match m.capacity {
                Capacity::Factor(f) => f,
                Capacity::Absolute(_) => 1.25,
            },
            alpha: m.alpha,
        }
    }
}

impl rk_model_config {
    /// The core config, or `BadConfig` naming the field C got wrong.
    pub(crate) fn to_core(self) -> Result<ModelConfig> {
        // SAFETY (union reads): `kind` selects the member the caller filled; every member holds
        // only integers and floats, for which any bit pattern is valid.
        let cfg = match self.kind {
            1 => {
                let c = unsafe { self.u.linear };
                ModelConfig::Linear(LinearConfig { n_in: us(c.n_in), n_out: us(c.n_out) })
            }
            2 => {
                let c = unsafe { self.u.mlp };
                if us(c.n_hidden) > RK_MAX_HIDDEN {
                    return Err(bad("n_hidden", "is above RK_MAX_HIDDEN"));
                }
                let dims = c.latent_dims[..us(c.n_hidden)].iter().map(|&d| us(d));
                ModelConfig::Mlp(MlpConfig {
                    n_in: us(c.n_in),
                    latent_dims: dims.collect(),
                    n_out: us(c.n_out),
                    act: activation(c.act, "act")?,
                })
            }
            3 => {
                let c = unsafe { self.u.transformer };
                ModelConfig::Transformer(c.stack.to_core(us(c.num_layers), c.autoregressive != 0)?)
            }
            4 => {
                let c = unsafe { self.u.encdec };
                let t = c.stack.to_core(0, false)?;
                ModelConfig::EncoderDecoder(EncoderDecoderConfig::from_stack(
                    &t,
                    us(c.num_encoder_layers),
                    us(c.num_decoder_layers),
                ))
            }
            _ => return Err(bad("type", "is not an rk_model_type")),
        };
        Ok(cfg)
    }

    /// The C view of a core config.
    pub(crate) fn from_core(cfg: &ModelConfig) -> Self {
        let act = |a: Activation| match a {
            Activation::Relu => rk_activation::RK_ACT_RELU,
            Activation::Tanh => rk_activation::RK_ACT_TANH,
            Activation::Gelu => rk_activation::RK_ACT_GELU,
        } as u32;
        let kv = |k: Option<KvDtype>| match k {
            None => rk_kv_cache::RK_KV_NONE,
            Some(KvDtype::F32) => rk_kv_cache::RK_KV_F32,
            Some(KvDtype::F16) => rk_kv_cache::RK_KV_F16,
            Some(KvDtype::Bf16) => rk_kv_cache::RK_KV_BF16,
        } as u32;
        let stack = |t: &TransformerConfig| rk_stack_config {
            ffn_act: act(t.ffn_act),
            kv_cache: kv(t.kv_cache),
            ..rk_stack_config::from_core(t)
        };
        match cfg {
            ModelConfig::Linear(c) => rk_model_config {
                kind: rk_model_type::RK_MODEL_LINEAR as u32,
                u: rk_model_config_u {
                    linear: rk_linear_config { n_in: c.n_in as u32, n_out: c.n_out as u32 },
                },
            },
            ModelConfig::Mlp(c) => {
                let mut latent_dims = [0; RK_MAX_HIDDEN];
                for (d, &w) in latent_dims.iter_mut().zip(c.latent_dims.iter()) {
                    *d = w as u32;
                }
                let mlp = rk_mlp_config {
                    n_in: c.n_in as u32,
                    n_hidden: c.latent_dims.len() as u32,
                    latent_dims,
                    n_out: c.n_out as u32,
                    act: act(c.act),
                };
                rk_model_config { kind: rk_model_type::RK_MODEL_MLP as u32, u: rk_model_config_u { mlp } }
            }
            ModelConfig::Transformer(t) => {
                let transformer = rk_transformer_config {
                    stack: stack(t),
                    num_layers: t.num_layers as u32,
                    autoregressive: u8::from(t.autoregressive),
                };
                rk_model_config {
                    kind: rk_model_type::RK_MODEL_TRANSFORMER as u32,
                    u: rk_model_config_u { transformer },
                }
            }
            ModelConfig::EncoderDecoder(e) => {
                let t = TransformerConfig {
                    input_dim: e.input_dim,
                    output_dim: e.output_dim,
                    embed_dim: e.embed_dim,
                    ffn_dim: e.ffn_dim,
                    num_layers: 0,
                    num_heads: e.num_heads,
                    num_groups: e.num_groups,
                    attention: e.attention,
                    max_seq_len: e.max_seq_len,
                    ffn_act: e.ffn_act,
                    autoregressive: false,
                    kv_cache: e.kv_cache,
                    moe: e.moe,
                };
                let encdec = rk_encdec_config {
                    stack: stack(&t),
                    num_encoder_layers: e.num_encoder_layers as u32,
                    num_decoder_layers: e.num_decoder_layers as u32,
                };
                rk_model_config {
                    kind: rk_model_type::RK_MODEL_ENCODER_DECODER as u32,
                    u: rk_model_config_u { encdec },
                }
            }
        }
    }

    /// The defaults of `kind` (the seed's CLI defaults), or `None` for an unknown kind.
    pub(crate) fn default_for(kind: u32) -> Option<Self> {
        let t = TransformerConfig::default();
        let stack = rk_stack_config::from_core(&t);
        let (kind, u) = match kind {
            1 => (
                rk_model_type::RK_MODEL_LINEAR,
                rk_model_config_u { linear: rk_linear_config { n_in: 8, n_out: 1 } },
            ),
            2 => {
                let mut latent_dims = [0; RK_MAX_HIDDEN];
                latent_dims[..3].copy_from_slice(&[128, 64, 32]);
                let mlp = rk_mlp_config {
                    n_in: 8,
                    n_hidden: 3,
                    latent_dims,
                    n_out: 1,
                    act: rk_activation::RK_ACT_RELU as u32,
                };
                (rk_model_type::RK_MODEL_MLP, rk_model_config_u { mlp })
            }
            3 => {
                let transformer =
                    rk_transformer_config { stack, num_layers: t.num_layers as u32, autoregressive: 0 };
                (rk_model_type::RK_MODEL_TRANSFORMER, rk_model_config_u { transformer })
            }
            4 => {
                let e = EncoderDecoderConfig::default();
                let encdec = rk_encdec_config {
                    stack,
                    num_encoder_layers: e.num_encoder_layers as u32,
                    num_decoder_layers: e.num_decoder_layers as u32,
                };
                (rk_model_type::RK_MODEL_ENCODER_DECODER, rk_model_config_u { encdec })
            }
            _ => return None,
        };
        Some(rk_model_config { kind: kind as u32, u })
    }
}

impl rk_optimizer {
    /// The core optimizer (core's `validate` runs when the model is planned).
    pub(crate) fn to_core(self) -> Result<Optimizer> {
        Ok(match self.kind {
            0 => Optimizer::Sgd(Sgd {
                lr: self.lr,
                momentum: self.momentum,
                dampening: self.dampening,
                weight_decay: self.weight_decay,
                nesterov: self.nesterov != 0,
            }),
            1 => Optimizer::Adam(Adam {
                lr: self.lr,
                beta1: self.beta1,
                beta2: self.beta2,
                eps: self.eps,
                weight_decay: self.weight_decay,
            }),
            2 => Optimizer::RmsProp(RmsProp {
                lr: self.lr,
                alpha: self.alpha,
                eps: self.eps,
                weight_decay: self.weight_decay,
                momentum: self.momentum,
                centered: self.centered != 0,
            }),
            _ => return Err(bad("kind", "is not an rk_optimizer_kind")),
        })
    }

    /// PyTorch's defaults for `kind` at learning rate `lr`.
    pub(crate) fn default_for(kind: u32, lr: f32) -> Option<Self> {
        let base = rk_optimizer {
            kind: rk_optimizer_kind::RK_OPT_ADAM as u32,
            lr,
            momentum: 0.0,
            dampening: 0.0,
            nesterov: 0,
            weight_decay: 0.0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            alpha: 0.99,
            centered: 0,
        };
        let kind = match kind {
            0 => rk_optimizer_kind::RK_OPT_SGD,
            1 => rk_optimizer_kind::RK_OPT_ADAM,
            2 => rk_optimizer_kind::RK_OPT_RMSPROP,
            _ => return None,
        };
        Some(rk_optimizer { kind: kind as u32, ..base })
    }
}

impl rk_mode {
    /// The core mode.
    pub(crate) fn to_core(self) -> Result<Mode> {
        let max_batch = us(self.max_batch);
        Ok(if self.training != 0 {
            Mode::Training { max_batch, optimizer: self.optimizer.to_core()? }
        } else {
            Mode::Inference { max_batch }
        })
    }
}

impl rk_schedule {
    /// The core schedule, validated.
    pub(crate) fn to_core(self) -> Result<Schedule> {
        let s = match self.kind {
            0 => Schedule::Constant,
            1 => Schedule::Step { step_size: us(self.step_size), gamma: self.gamma },
            2 => Schedule::Exponential { gamma: self.gamma },
            3 => Schedule::Cosine { min_lr: self.min_lr },
            4 => Schedule::WarmupCosine { warmup_steps: us(self.warmup_steps), min_lr: self.min_lr },
            _ => return Err(bad("kind", "is not an rk_schedule_kind")),
        };
        s.validate()?;
        if !(self.clip_grad_norm.is_finite() && self.clip_grad_norm >= 0.0) {
            return Err(bad("clip_grad_norm", "must be a finite number >= 0 (0 = no clipping)"));
        }
        Ok(s)
    }
}
