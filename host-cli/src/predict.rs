//! `regkern predict`: run a trained model from its checkpoint alone (the config travels in the
//! safetensors metadata) over CSV rows, one output row per input row — the seed's
//! `experiment.predict()`.

use std::io::{Read, Write};
use std::path::PathBuf;

use clap::Args;
use regkern_core::checkpoint::{self, Header};
use regkern_core::{Mode, Model, ModelConfig, Net};

use crate::data::parse_rows_with;

/// Arguments of `regkern predict`.
#[derive(Args, Debug)]
pub struct PredictArgs {
    /// A checkpoint written by `regkern train` (model.safetensors, best.safetensors or
    /// checkpoint.safetensors of a run directory).
    #[arg(long)]
    checkpoint: PathBuf,
    /// CSV of inputs, one sample per row: features, or a sequence's values in order
    /// (position-major when input_dim > 1) [default: standard input].
    #[arg(long)]
    input: Option<PathBuf>,
    /// Where to write the outputs as CSV [default: standard output].
    #[arg(long)]
    output: Option<PathBuf>,
    /// Encoder-decoders: positions to decode per sample [default: the source's length].
    #[arg(long = "target_len", alias = "target-len")]
    target_len: Option<usize>,
    /// Whether the input's first row is a header of names (`auto`: when none of its cells is a
    /// number).
    #[arg(long, value_enum, default_value = "auto")]
    header: crate::data::HeaderRow,
    /// Samples per forward pass.
    #[arg(long = "batch_size", alias = "batch-size", default_value_t = 64)]
    batch_size: usize,
    /// Gemm kernels: `auto` (the CPU's fastest) or `portable` (bit-identical to the firmware).
    #[arg(long, value_enum, default_value = "auto")]
    kernels: crate::config::KernelsArg,
}

/// Predict for every input row and write one output row each: the model's outputs (linear,
/// MLP, transformer regression), every position's output (autoregressive), or the greedy decode
/// (encoder-decoder).
pub fn run(args: &PredictArgs) -> Result<(), String> {
    let path = args.checkpoint.display();
    let bytes = std::fs::read(&args.checkpoint).map_err(|e| format!("cannot read {path}: {e}"))?;
    let cfg = Header::parse(&bytes).and_then(|h| h.config()).map_err(|e| format!("{path}: {e}"))?;
    if args.batch_size == 0 {
        return Err("--batch_size must be at least 1".into());
    }
    let model = Model::plan(&cfg, Mode::Inference { max_batch: args.batch_size })
        .map_err(|e| format!("{path}: {e}"))?;
    // The metadata's config is held against the tensors before an arena is sized from it.
    checkpoint::verify(&bytes, &model, None).map_err(|e| crate::train::checkpoint_error(&path, &bytes, e))?;
    let mut arena = crate::mem::zeroed::<f32>(model.report().total_floats(), "the arena")?;
    let mut net = Net::new(model, &mut arena).map_err(|e| e.to_string())?;
    net.set_kernels(args.kernels.kernels());
    net.load_checkpoint(&bytes).map_err(|e| crate::train::checkpoint_error(&path, &bytes, e))?;

    let (text, source) = match &args.input {
        Some(p) => (
            std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?,
            p.display().to_string(),
        ),
        None => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| format!("cannot read standard input: {e}"))?;
            (s, "standard input".to_string())
        }
    };
    let rows = parse_rows_with(&text, args.header).map_err(|e| format!("{source}: {e}"))?;
    let width = rows.width;
    let in_dim = net.model().in_dim();
    match &cfg {
        ModelConfig::Linear(_) | ModelConfig::Mlp(_) => {
            if width != in_dim {
                return Err(format!("{source}: rows have {width} values; the model takes {in_dim} features"));
            }
        }
        ModelConfig::Transformer(_) | ModelConfig::EncoderDecoder(_) => {
            let max = net.model().max_seq_len();
            if !width.is_multiple_of(in_dim) || width / in_dim > max {
                return Err(format!(
                    "{source}: rows have {width} values; the model takes sequences of up to {max} positions of {in_dim} value(s)"
                ));
            }
            net.set_seq_len(width / in_dim).map_err(|e| e.to_string())?;
            if matches!(cfg, ModelConfig::EncoderDecoder(_)) {
                net.set_target_len(args.target_len.unwrap_or(width / in_dim)).map_err(|e| e.to_string())?;
            }
        }
    }
    if args.target_len.is_some() && !matches!(cfg, ModelConfig::EncoderDecoder(_)) {
        return Err("--target_len applies to encoder-decoder models only".into());
    }
    let (in_len, out_len) = (net.in_len(), net.out_len());
    let n = rows.values.len() / width;
    let outputs = n.checked_mul(out_len).ok_or("the outputs would not fit in memory")?;
    let mut out = crate::mem::zeroed::<f32>(outputs, "the outputs")?;
    for (x, y) in rows.values.chunks(args.batch_size * in_len).zip(out.chunks_mut(args.batch_size * out_len))
    {
        net.predict(x, y).map_err(|e| e.to_string())?;
    }
    let mut csv = String::with_capacity(out.len() * 12);
    for row in out.chunks(out_len) {
        let cells: Vec<String> = row.iter().map(|v| v.to_string()).collect();
        csv.push_str(&cells.join(","));
        csv.push('\n');
    }
    match &args.output {
        Some(p) => crate::logdir::write_atomic(p, csv.as_bytes()),
        None => std::io::stdout()
            .write_all(csv.as_bytes())
            .map_err(|e| format!("cannot write standard output: {e}")),
    }
}
