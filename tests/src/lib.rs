//! Shared helpers of regkern's cross-crate tests: PyTorch fixtures and small model builders.

use std::collections::HashMap;
use std::path::PathBuf;

use regkern_core::layers::moe::Capacity;
use regkern_core::models::transformer::MoeConfig;
use regkern_core::{
    Activation, AttentionType, EncoderDecoderConfig, LinearConfig, MlpConfig, ModelConfig, Net,
    TransformerConfig,
};

/// A fixture written by `fixtures/gen_fixtures.py`: named f32 tensors plus the model config.
pub struct Fixture {
    /// File stem, for messages.
    pub name: String,
    /// The config JSON from the file's metadata.
    pub config: serde_json::Value,
    tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

impl Fixture {
    /// Load `tests/fixtures/<name>.safetensors`.
    pub fn load(name: &str) -> Fixture {
        let path =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(format!("{name}.safetensors"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).expect("fixture header");
        let config = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get("config"))
            .map(|s| serde_json::from_str(s).expect("config is JSON"))
            .expect("fixture has a config");
        let st = safetensors::SafeTensors::deserialize(&bytes).expect("fixture parses");
        let tensors = st
            .tensors()
            .into_iter()
            .map(|(k, v)| {
                assert_eq!(v.dtype(), safetensors::Dtype::F32, "{k}");
                let data =
                    v.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
                (k, (v.shape().to_vec(), data))
            })
            .collect();
        Fixture { name: name.into(), config, tensors }
    }

    /// A tensor's data; panics with its name if missing.
    pub fn get(&self, key: &str) -> &[f32] {
        &self.tensors.get(key).unwrap_or_else(|| panic!("{}: no tensor {key}", self.name)).1
    }

    /// The names of every tensor.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// A tensor's shape.
    pub fn shape(&self, key: &str) -> &[usize] {
        &self.tensors.get(key).unwrap_or_else(|| panic!("{}: no tensor {key}", self.name)).0
    }

    /// The model config in the metadata, as core's type.
    pub fn model_config(&self) -> ModelConfig {
        let c = &self.config;
        let u = |k: &str| c[k].as_u64().unwrap_or_else(|| panic!("config.{k}")) as usize;
        match c["type"].as_str() {
            Some("linear") => ModelConfig::Linear(LinearConfig { n_in: u("n_in"), n_out: u("n_out") }),
            Some("nlinear") => {
                let dims: Vec<usize> = c["latent_dims"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_u64().unwrap() as usize)
                    .collect();
                let act = Activation::from_name(c["act"].as_str().unwrap()).unwrap();
                ModelConfig::Mlp(MlpConfig {
                    n_in: u("n_in"),
                    latent_dims: heapless::Vec::from_slice(&dims).unwrap(),
                    n_out: u("n_out"),
                    act,
                })
            }
            Some("transformer") => ModelConfig::Transformer(self.transformer_config()),
            Some("encoder_decoder") => {
                let t = self.transformer_config();
                ModelConfig::EncoderDecoder(EncoderDecoderConfig::from_stack(
                    &t,
                    u("num_encoder_layers"),
                    u("num_decoder_layers"),
                ))
            }
            other => panic!("unknown fixture type {other:?}"),
        }
    }

    /// The transformer fields of the config (`num_layers` 0 when absent, as in encoder-decoders).
    fn transformer_config(&self) -> TransformerConfig {
        let c = &self.config;
        let u = |k: &str| c[k].as_u64().unwrap_or_else(|| panic!("config.{k}")) as usize;
        TransformerConfig {
            input_dim: u("input_dim"),
            output_dim: u("output_dim"),
            embed_dim: u("embed_dim"),
            ffn_dim: u("ffn_dim"),
            num_layers: c["num_layers"].as_u64().unwrap_or(0) as usize,
            num_heads: u("num_heads"),
            num_groups: u("num_groups"),
            attention: match c["attention_type"].as_str() {
                Some("mha") => AttentionType::Mha,
                Some("mqa") => AttentionType::Mqa,
                Some("gqa") => AttentionType::Gqa,
                other => panic!("unknown attention_type {other:?}"),
            },
            max_seq_len: u("max_seq_len"),
            ffn_act: Activation::Gelu,
            autoregressive: c["autoregressive"].as_bool().unwrap_or(false),
            kv_cache: None,
            moe: c["moe"].as_bool().unwrap_or(false).then(|| MoeConfig {
                num_experts: u("num_experts"),
                top_k: u("topk"),
                capacity: match c["capacity"].as_u64() {
                    Some(cap) => Capacity::Absolute(cap as usize),
                    None => Capacity::Factor(c["capacity_factor"].as_f64().unwrap() as f32),
                },
                alpha: c["alpha"].as_f64().unwrap() as f32,
            }),
        }
    }

    /// Tokens per sequence of a sequence fixture (1 for linear and MLP fixtures).
    pub fn seq_len(&self) -> usize {
        self.config["seq_len"].as_u64().map_or(1, |t| t as usize)
    }

    /// Target tokens per sequence of an encoder-decoder fixture.
    pub fn target_len(&self) -> Option<usize> {
        self.config["target_len"].as_u64().map(|t| t as usize)
    }

    /// Batch size of the fixture's input.
    pub fn batch(&self) -> usize {
        self.config["batch"].as_u64().unwrap() as usize
    }

    /// Copy the tensors `<prefix><param name>` into the net's parameters, checking every shape
    /// against the parameter table.
    pub fn load_params(&self, net: &mut Net<'_>, prefix: &str) {
        let table: Vec<_> = net.model().params().collect();
        for p in table {
            let key = format!("{prefix}{}", p.name.as_str());
            assert_eq!(self.shape(&key), p.shape(), "{}: shape of {key}", self.name);
            net.params_mut()[p.slot.range()].copy_from_slice(self.get(&key));
        }
    }
}

/// Relative errors of `got` against `want` at the tensor's scale: ‖got − want‖₂ / ‖want‖₂, and
/// max|got − want| / max|want| with the index of that worst element.
pub fn rel_errors(got: &[f32], want: &[f32]) -> (f64, f64, usize) {
    assert_eq!(got.len(), want.len(), "lengths differ");
    let (mut d2, mut w2, mut dmax, mut wmax, mut worst) = (0.0f64, 0.0f64, 0.0f64, 0.0f64, 0);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let d = (f64::from(g) - f64::from(w)).abs();
        d2 += d * d;
        w2 += f64::from(w) * f64::from(w);
        wmax = wmax.max(f64::from(w).abs());
        if d > dmax {
            (dmax, worst) = (d, i);
        }
    }
    let rel = |num: f64, den: f64| if den == 0.0 { num } else { num / den };
    (rel(d2.sqrt(), w2.sqrt()), rel(dmax, wmax), worst)
}

/// An MLP config with the given hidden widths and activation.
pub fn mlp(n_in: usize, dims: &[usize], n_out: usize, act: Activation) -> ModelConfig {
    ModelConfig::Mlp(MlpConfig { n_in, latent_dims: heapless::Vec::from_slice(dims).unwrap(), n_out, act })
}
