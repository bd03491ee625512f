//! The model config as `regkern.*` metadata: written into the header with the tensor table
//! ([`write_header`]) and read back ([`Header::config`]).

use core::fmt::{self, Write};

use super::crc::Crc32c;
use super::{CRC_KEY, Header, Progress, Str, bad};
use crate::error::{Error, Result};
use crate::layers::moe::Capacity;
use crate::layers::{Activation, KvDtype};
#[cfg(feature = "encdec")]
use crate::models::EncoderDecoderConfig;
#[cfg(feature = "transformer")]
use crate::models::transformer::MoeConfig;
#[cfg(feature = "transformer")]
use crate::models::{AttentionType, TransformerConfig};
#[cfg(feature = "mlp")]
use crate::models::{LinearConfig, MlpConfig};
use crate::models::{Model, ModelConfig};
use crate::optim::Optimizer;

impl<'b> Header<'b> {
    /// The model config stored by regkern in the metadata. Errors name the missing or invalid
    /// key (`BadCheckpoint`) or the invalid field (`BadConfig`).
    pub fn config(&self) -> Result<ModelConfig> {
        let get = |k: &'static str| -> Result<Str<'b>> {
            let mut key = heapless::String::<48>::new();
            // Keys are short literals.
            let _ = write!(key, "regkern.{k}");
            self.metadata(&key)
                .ok_or(Error::BadConfig { field: k, reason: "is missing from the checkpoint's metadata" })
        };
        let num = |k: &'static str| -> Result<usize> {
            get(k)?
                .parse::<usize>()
                .ok_or(Error::BadConfig { field: k, reason: "is not a number in the checkpoint" })
        };
        let real = |k: &'static str| -> Result<f32> {
            get(k)?
                .parse::<f32>()
                .ok_or(Error::BadConfig { field: k, reason: "is not a number in the checkpoint" })
        };
        let flag = |k: &'static str| -> Result<bool> {
            let s = get(k)?;
            if s.eq_str("true") {
                Ok(true)
            } else if s.eq_str("false") {
                Ok(false)
            } else {
                Err(Error::BadConfig { field: k, reason: "is not true or false in the checkpoint" })
            }
        };
        let name = |k: &'static str| -> Result<heapless::String<16>> {
            get(k)?.decode::<16>().ok_or(Error::BadConfig { field: k, reason: "is not a known name" })
        };
        let kind = name("type")
            .map_err(|_| bad("metadata has no regkern.type: not a regkern checkpoint", self.base))?;
        let act = |k| {
            Activation::from_name(&name(k)?)
                .ok_or(Error::BadConfig { field: "act", reason: "is not relu, tanh or gelu" })
        };
        #[cfg(feature = "transformer")]
        let stack = || -> Result<TransformerConfig> {
            let kv_cache = name("kv_cache")?;
            Ok(TransformerConfig {
                input_dim: num("input_dim")?,
                output_dim: num("output_dim")?,
                embed_dim: num("embed_dim")?,
                ffn_dim: num("ffn_dim")?,
                num_layers: 0,
                num_heads: num("num_heads")?,
                num_groups: num("num_groups")?,
                attention: AttentionType::from_name(&name("attention_type")?)
                    .ok_or(Error::BadConfig { field: "attention_type", reason: "is not mha, mqa or gqa" })?,
                max_seq_len: num("max_seq_len")?,
                ffn_act: act("ffn_act")?,
                autoregressive: false,
                kv_cache: match kv_cache.as_str() {
                    "none" => None,
                    s => Some(KvDtype::from_name(s).ok_or(Error::BadConfig {
                        field: "kv_cache",
                        reason: "is not f32, f16, bf16 or none",
                    })?),
                },
                moe: if flag("moe")? {
                    Some(MoeConfig {
                        num_experts: num("num_experts")?,
                        top_k: num("topk")?,
                        capacity: match get("capacity")? {
                            s if s.eq_str("") => Capacity::Factor(real("capacity_factor")?),
                            _ => Capacity::Absolute(num("capacity")?),
                        },
                        alpha: real("alpha")?,
                    })
                } else {
                    None
                },
            })
        };
        let cfg = match kind.as_str() {
            #[cfg(feature = "mlp")]
            "linear" => ModelConfig::Linear(LinearConfig { n_in: num("n_in")?, n_out: num("n_out")? }),
            #[cfg(feature = "mlp")]
            "nlinear" => {
                let dims = get("latent_dims")?.decode::<256>().ok_or(Error::BadConfig {
                    field: "latent_dims",
                    reason: "is too long in the checkpoint",
                })?;
                let mut latent_dims = heapless::Vec::new();
                for d in dims.split(',').filter(|d| !d.is_empty()) {
                    let d = d.parse().map_err(|_| Error::BadConfig {
                        field: "latent_dims",
                        reason: "is not a comma-separated list of numbers in the checkpoint",
                    })?;
                    latent_dims.push(d).map_err(|_| Error::BadConfig {
                        field: "latent_dims",
                        reason: "has more hidden layers than MAX_HIDDEN",
                    })?;
                }
                ModelConfig::Mlp(MlpConfig {
                    n_in: num("n_in")?,
                    latent_dims,
                    n_out: num("n_out")?,
                    act: act("act")?,
                })
            }
            #[cfg(feature = "transformer")]
            "transformer" => ModelConfig::Transformer(TransformerConfig {
                num_layers: num("num_layers")?,
                autoregressive: flag("autoregressive")?,
                ..stack()?
            }),
            #[cfg(feature = "encdec")]
            "encoder_decoder" => {
                let t = stack()?;
                ModelConfig::EncoderDecoder(EncoderDecoderConfig::from_stack(
                    &t,
                    num("num_encoder_layers")?,
                    num("num_decoder_layers")?,
                ))
            }
            _ => {
                return Err(Error::BadConfig {
                    field: "type",
                    reason: "is not a model type this build of regkern has (see its cargo features)",
                });
            }
        };
        Ok(cfg)
    }
}

/// Every `regkern.*` metadata pair of `model`'s checkpoint but the checksum, as (key without
/// the prefix, value).
fn each_meta(
    model: &Model,
    training: Option<(&Optimizer, Progress)>,
    meta: &mut impl FnMut(&str, fmt::Arguments<'_>) -> fmt::Result,
) -> fmt::Result {
    meta("version", format_args!("{}", env!("CARGO_PKG_VERSION")))?;
    config_metadata(model.config(), meta)?;
    if let Some((o, progress)) = training {
        meta("optimizer", format_args!("{}", o.name()))?;
        meta("epochs", format_args!("{}", progress.epochs))?;
        meta("steps", format_args!("{}", progress.steps))?;
    }
    Ok(())
}

/// The checksum's start: the CRC-32C of the `regkern.*` metadata, fed as `key=value\n` per
/// pair in file order (what [`super::Header`] recomputes on load); the tensor data follows.
pub(super) fn metadata_crc(
    model: &Model,
    training: Option<(&Optimizer, Progress)>,
) -> core::result::Result<Crc32c, fmt::Error> {
    struct Feed(Crc32c);
    impl Write for Feed {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            self.0.update(s.as_bytes());
            Ok(())
        }
    }
    let mut feed = Feed(Crc32c::default());
    each_meta(model, training, &mut |k, v| writeln!(feed, "regkern.{k}={v}"))?;
    Ok(feed.0)
}

/// The JSON header of `model`'s checkpoint, whose data has the checksum `crc`.
pub(super) fn write_header(
    w: &mut impl Write,
    model: &Model,
    training: Option<(&Optimizer, Progress)>,
    crc: u32,
) -> fmt::Result {
    w.write_str("{\"__metadata__\":{\"format\":\"pt\"")?;
    each_meta(model, training, &mut |k, v| write!(w, ",\"regkern.{k}\":\"{v}\""))?;
    write!(w, ",\"{CRC_KEY}\":\"{crc:08x}\"")?;
    w.write_str("}")?;
    let mut at = 0usize;
    let copies = training.map_or(0, |(o, _)| o.state_copies());
    for copy in 0..=copies {
        for p in model.params() {
            w.write_str(",\"")?;
            if let Some((o, _)) = training.filter(|_| copy > 0) {
                write!(w, "optimizer.{}.", o.state_name(copy - 1))?;
            }
            write!(w, "{}\":{{\"dtype\":\"F32\",\"shape\":[", p.name.as_str())?;
            for (i, d) in p.shape().iter().enumerate() {
                write!(w, "{}{d}", if i > 0 { "," } else { "" })?;
            }
            let end = at + 4 * p.slot.len;
            write!(w, "],\"data_offsets\":[{at},{end}]}}")?;
            at = end;
        }
    }
    w.write_str("}")
}

/// The config as `regkern.*` metadata pairs (every value a string).
fn config_metadata(
    cfg: &ModelConfig,
    meta: &mut impl FnMut(&str, fmt::Arguments<'_>) -> fmt::Result,
) -> fmt::Result {
    match cfg {
        #[cfg(feature = "mlp")]
        ModelConfig::Linear(c) => {
            meta("type", format_args!("linear"))?;
            meta("n_in", format_args!("{}", c.n_in))?;
            meta("n_out", format_args!("{}", c.n_out))
        }
        #[cfg(feature = "mlp")]
        ModelConfig::Mlp(c) => {
            meta("type", format_args!("nlinear"))?;
            meta("n_in", format_args!("{}", c.n_in))?;
            meta("latent_dims", format_args!("{}", Dims(&c.latent_dims)))?;
            meta("n_out", format_args!("{}", c.n_out))?;
            meta("act", format_args!("{}", c.act.name()))
        }
        #[cfg(feature = "transformer")]
        ModelConfig::Transformer(c) => {
            meta("type", format_args!("transformer"))?;
            meta("num_layers", format_args!("{}", c.num_layers))?;
            meta("autoregressive", format_args!("{}", c.autoregressive))?;
            stack_metadata(c, meta)
        }
        #[cfg(feature = "encdec")]
        ModelConfig::EncoderDecoder(c) => {
            meta("type", format_args!("encoder_decoder"))?;
            meta("num_encoder_layers", format_args!("{}", c.num_encoder_layers))?;
            meta("num_decoder_layers", format_args!("{}", c.num_decoder_layers))?;
            stack_metadata(&TransformerConfig { kv_cache: c.kv_cache, ..c.encoder() }, meta)
        }
    }
}

#[cfg(feature = "transformer")]
fn stack_metadata(
    c: &TransformerConfig,
    meta: &mut impl FnMut(&str, fmt::Arguments<'_>) -> fmt::Result,
) -> fmt::Result {
    meta("input_dim", format_args!("{}", c.input_dim))?;
    meta("output_dim", format_args!("{}", c.output_dim))?;
    meta("embed_dim", format_args!("{}", c.embed_dim))?;
    meta("ffn_dim", format_args!("{}", c.ffn_dim))?;
    meta("num_heads", format_args!("{}", c.num_heads))?;
    meta("num_groups", format_args!("{}", c.num_groups))?;
    meta("attention_type", format_args!("{}", c.attention.name()))?;
    meta("max_seq_len", format_args!("{}", c.max_seq_len))?;
    meta("ffn_act", format_args!("{}", c.ffn_act.name()))?;
    meta("kv_cache", format_args!("{}", c.kv_cache.map_or("none", KvDtype::name)))?;
    meta("moe", format_args!("{}", c.moe.is_some()))?;
    if let Some(m) = c.moe {
        meta("num_experts", format_args!("{}", m.num_experts))?;
        meta("topk", format_args!("{}", m.top_k))?;
        match m.capacity {
            Capacity::Absolute(n) => {
                meta("capacity", format_args!("{n}"))?;
                meta("capacity_factor", format_args!(""))?;
            }
            Capacity::Factor(f) => {
                meta("capacity", format_args!(""))?;
                meta("capacity_factor", format_args!("{f}"))?;
            }
        }
        meta("alpha", format_args!("{}", m.alpha))?;
    }
    Ok(())
}

/// `128,64,32`.
struct Dims<'a>(&'a [usize]);

impl fmt::Display for Dims<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            write!(f, "{}{d}", if i > 0 { "," } else { "" })?;
        }
        Ok(())
    }
}
