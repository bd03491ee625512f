//! Checkpoints: safetensors bytes written into, and read from, caller buffers without heap.
//!
//! The format is Hugging Face's safetensors: an 8-byte little-endian header length `N`, `N` bytes
//! of JSON, then the tensors' bytes. regkern writes
//!
//! ```text
//! {"__metadata__":{"format":"pt","regkern.version":"0.1.0","regkern.type":"nlinear",...},
//!  "layers.0.weight":{"dtype":"F32","shape":[128,8],"data_offsets":[0,4096]}, ...}
//! ```
//!
//! with every parameter under its PyTorch name, in `state_dict` order, f32 little-endian, the
//! header padded with spaces to a multiple of 8 bytes. So
//! `model.load_state_dict(safetensors.torch.load_file(path))` works on the equivalent PyTorch
//! module, and the model's config travels in the metadata (`regkern.*` keys, all strings), so a
//! checkpoint alone is enough to rebuild the model ([`Header::config`]).
//!
//! A *training* checkpoint also holds the optimizer's state (`optimizer.<state>.<name>`, with
//! PyTorch's state names: `exp_avg`, `exp_avg_sq`, `momentum_buffer`, `square_avg`, `grad_avg`)
//! and the progress (`regkern.epochs`, `regkern.steps`), from which training resumes exactly.
//!
//! Loading follows the format's safety rules and checks everything against the model before it
//! writes a single parameter, so a bad file leaves the model untouched: header length within the
//! file and at most [`MAX_HEADER`] bytes, valid JSON, dtype `F32`, shapes equal to the model's,
//! tensors that tile the data region exactly (in bounds, no overlap, no gap, no trailing bytes),
//! every parameter present once and no unknown name. Errors are [`Error::BadCheckpoint`] with the
//! byte offset in the file where the problem lies.

use core::fmt::{self, Write};

use crate::arena::Region;
use crate::error::{Error, Result, check_len};
use crate::layers::moe::Capacity;
use crate::layers::{Activation, KvDtype};
use crate::models::transformer::MoeConfig;
use crate::models::{
    AttentionType, EncoderDecoderConfig, LinearConfig, MlpConfig, Model, ModelConfig, ParamInfo,
    TransformerConfig,
};
use crate::optim::Optimizer;

/// Largest header accepted, in bytes (the safetensors reference implementation's limit).
pub const MAX_HEADER: usize = 100_000_000;

/// How far training got: stored in training checkpoints, restored by resuming.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Epochs completed.
    pub epochs: u64,
    /// Optimizer steps taken.
    pub steps: u64,
}

/// The optimizer's part of a training checkpoint.
#[derive(Clone, Copy, Debug)]
pub struct TrainingState<'a> {
    /// The optimizer whose state this is (its name is stored and checked on load).
    pub optimizer: &'a Optimizer,
    /// Its state: `optimizer.state_copies()` copies of the parameter layout.
    pub opt_state: &'a [f32],
    /// Epochs and steps done.
    pub progress: Progress,
}

/// Bytes [`save`] needs for the checkpoint of `model`: exact for parameters only; for a training
/// checkpoint (with `optimizer`'s state) an upper bound, as the progress numbers vary in length.
pub fn saved_len(model: &Model, optimizer: Option<&Optimizer>) -> Result<usize> {
    let mut count = Counter(0);
    let progress = Progress { epochs: u64::MAX, steps: u64::MAX }; // the longest numbers
    write_header(&mut count, model, optimizer.map(|o| (o, progress))).map_err(|_| Error::SizeOverflow)?;
    let header = count.0.next_multiple_of(8);
    let copies = optimizer.map_or(0, Optimizer::state_copies);
    let floats = model.param_floats().checked_mul(1 + copies).ok_or(Error::SizeOverflow)?;
    floats.checked_mul(4).and_then(|d| d.checked_add(8 + header)).ok_or(Error::SizeOverflow)
}

/// Write the checkpoint of `model` with parameters `params` (and, for a training checkpoint, the
/// optimizer state) into `out`; returns the bytes written. `out` must hold at least
/// [`saved_len`] bytes (`BadLen` otherwise; nothing is written then).
pub fn save(
    model: &Model,
    params: &[f32],
    training: Option<TrainingState<'_>>,
    out: &mut [u8],
) -> Result<usize> {
    check_len("params", params.len(), model.report().floats(Region::Params))?;
    let opt = training.map(|t| (t.optimizer, t.progress));
    let mut count = Counter(0);
    write_header(&mut count, model, opt).map_err(|_| Error::SizeOverflow)?;
    let header = count.0.next_multiple_of(8);
    let state = training.map_or(&[][..], |t| t.opt_state);
    let copies = training.map_or(0, |t| t.optimizer.state_copies());
    if let Some(t) = training {
        check_len("opt_state", t.opt_state.len(), params.len() * copies)?;
        check_len(
            "optimizer state copies",
            copies,
            model.report().floats(Region::OptState) / params.len().max(1),
        )?;
    }
    let total = 8 + header + 4 * model.param_floats() * (1 + copies);
    if out.len() < total {
        return Err(Error::BadLen { what: "checkpoint buffer", expected: total, got: out.len() });
    }
    let (len, rest) = out.split_at_mut(8);
    len.copy_from_slice(&(header as u64).to_le_bytes());
    let (head, data) = rest.split_at_mut(header);
    let mut w = SliceWriter { buf: head, at: 0 };
    write_header(&mut w, model, opt).map_err(|_| Error::SizeOverflow)?;
    let end = w.at;
    head[end..].fill(b' ');
    // Data: the parameters in table order, then each state copy in the same order.
    let mut at = 0;
    for copy in 0..=copies {
        let src = if copy == 0 { params } else { &state[(copy - 1) * params.len()..][..params.len()] };
        for p in model.params() {
            for v in &src[p.slot.range()] {
                data[at..at + 4].copy_from_slice(&v.to_le_bytes());
                at += 4;
            }
        }
    }
    Ok(total)
}

/// Check `bytes` as a checkpoint of `model` and copy its parameters into `params` (and, with
/// `training`, the optimizer state into its slice). Returns the parsed header (metadata,
/// progress). On any error nothing has been written.
pub fn load<'b>(
    bytes: &'b [u8],
    model: &Model,
    params: &mut [f32],
    training: Option<(&Optimizer, &mut [f32])>,
) -> Result<Header<'b>> {
    check_len("params", params.len(), model.report().floats(Region::Params))?;
    let header = Header::parse(bytes)?;
    let copies = match &training {
        Some((o, state)) => {
            check_len("opt_state", state.len(), params.len() * o.state_copies())?;
            let saved = header.metadata("regkern.optimizer");
            if !saved.is_some_and(|s| s.eq_str(o.name())) {
                return Err(bad("optimizer state is missing or from another optimizer", header.base));
            }
            o.state_copies()
        }
        None => 0,
    };
    let optimizer = training.as_ref().map(|(o, _)| **o);
    // Pass 1: validate every entry against the model and the data region, writing nothing.
    let data_len = bytes.len() - header.data_start;
    let (mut count, mut sum, mut reaches_end) = (0usize, 0usize, false);
    for e in header.entries() {
        let e = e?;
        let at = e.key_at;
        let Some((_, p)) = find_tensor(model, optimizer.as_ref(), &e.name) else {
            // Another optimizer's state, when only the parameters are wanted, is skipped.
            if training.is_none() && e.name.starts_with("optimizer.") {
                check_extent(&header, &e, data_len, None)?;
                sum += e.end - e.begin;
                reaches_end |= e.end == data_len;
                continue;
            }
            return Err(bad("tensor name not in the model", at));
        };
        ensure_bad(e.dtype.eq_str("F32"), "dtype must be F32", at)?;
        ensure_bad(e.shape() == p.shape(), "shape differs from the model's", at)?;
        check_extent(&header, &e, data_len, Some(4 * p.slot.len))?;
        sum += e.end - e.begin;
        reaches_end |= e.end == data_len;
        count += 1;
    }
    let expected = model.param_count() * (1 + copies);
    if count != expected {
        return Err(bad("tensors missing: every parameter must be present", header.base));
    }
    ensure_bad(
        sum == data_len && (reaches_end || data_len == 0),
        "tensors do not tile the data exactly",
        header.base,
    )?;
    // Pass 2: copy.
    let (state_len, mut state) = (params.len(), training.map(|(_, s)| s));
    for e in header.entries() {
        let e = e?;
        let Some((copy, p)) = find_tensor(model, optimizer.as_ref(), &e.name) else { continue };
        let dst = if copy == 0 {
            &mut params[p.slot.range()]
        } else {
            let state = state.as_deref_mut().expect("copies > 0 only with a state");
            &mut state[(copy - 1) * state_len..][p.slot.range()]
        };
        let src = &bytes[header.data_start + e.begin..header.data_start + e.end];
        for (d, b) in dst.iter_mut().zip(src.chunks_exact(4)) {
            *d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
    }
    Ok(header)
}

/// A parsed safetensors header: the JSON, where the data begins, and accessors.
#[derive(Clone, Copy, Debug)]
pub struct Header<'b> {
    json: &'b [u8],
    /// Offset of the JSON in the file (8).
    base: usize,
    data_start: usize,
}

impl<'b> Header<'b> {
    /// Check the framing and the JSON of `bytes` (not yet against any model).
    pub fn parse(bytes: &'b [u8]) -> Result<Self> {
        ensure_bad(bytes.len() >= 8, "file shorter than its 8-byte header length", 0)?;
        let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
        ensure_bad(n <= MAX_HEADER as u64, "header larger than 100 MB", 0)?;
        let n = n as usize;
        ensure_bad(n <= bytes.len() - 8, "header length beyond the end of the file", 0)?;
        let json = &bytes[8..8 + n];
        ensure_bad(json.first() == Some(&b'{'), "header is not a JSON object", 8)?;
        let h = Header { json, base: 8, data_start: 8 + n };
        // Walk it once: syntax, metadata and entry shapes; trailing bytes may only be spaces.
        let mut p = h.parser();
        p.object(|p, key| {
            if key.eq_str("__metadata__") {
                p.object(|p, _| p.string().map(|_| ()))
            } else {
                Entry::parse(p, key).map(|_| ())
            }
        })?;
        p.ws();
        ensure_bad(p.at == json.len(), "bytes after the header's JSON object", h.base + p.at)?;
        Ok(h)
    }

    fn parser(&self) -> Parser<'b> {
        Parser { s: self.json, at: 0, base: self.base }
    }

    /// The metadata value under `key`, if present.
    pub fn metadata(&self, key: &str) -> Option<Str<'b>> {
        let mut found = None;
        let mut p = self.parser();
        // The header was validated by `parse`: no error can occur here.
        let _ = p.object(|p, k| {
            if k.eq_str("__metadata__") {
                p.object(|p, mk| {
                    let v = p.string()?;
                    if mk.eq_str(key) {
                        found = Some(v);
                    }
                    Ok(())
                })
            } else {
                Entry::parse(p, k).map(|_| ())
            }
        });
        found
    }

    /// Training progress (epochs and steps done), for training checkpoints.
    pub fn progress(&self) -> Option<Progress> {
        let num = |k: &str| self.metadata(k).and_then(|s| s.parse::<u64>());
        Some(Progress { epochs: num("regkern.epochs")?, steps: num("regkern.steps")? })
    }

    /// The optimizer whose state a training checkpoint holds (`adam`, `sgd`, `rmsprop`).
    pub fn optimizer_name(&self) -> Option<Str<'b>> {
        self.metadata("regkern.optimizer")
    }

    /// The tensor entries, in header order.
    fn entries(&self) -> Entries<'b> {
        let mut p = self.parser();
        p.ws();
        p.at += 1; // '{', checked by parse
        Entries { p, done: false }
    }

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
            "linear" => ModelConfig::Linear(LinearConfig { n_in: num("n_in")?, n_out: num("n_out")? }),
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
            "transformer" => ModelConfig::Transformer(TransformerConfig {
                num_layers: num("num_layers")?,
                autoregressive: flag("autoregressive")?,
                ..stack()?
            }),
            "encoder_decoder" => {
                let t = stack()?;
                ModelConfig::EncoderDecoder(EncoderDecoderConfig {
                    input_dim: t.input_dim,
                    output_dim: t.output_dim,
                    embed_dim: t.embed_dim,
                    ffn_dim: t.ffn_dim,
                    num_encoder_layers: num("num_encoder_layers")?,
                    num_decoder_layers: num("num_decoder_layers")?,
                    num_heads: t.num_heads,
                    num_groups: t.num_groups,
                    attention: t.attention,
                    max_seq_len: t.max_seq_len,
                    ffn_act: t.ffn_act,
                    moe: t.moe,
                    kv_cache: t.kv_cache,
                })
            }
            _ => return Err(Error::BadConfig { field: "type", reason: "is not a model type regkern knows" }),
        };
        Ok(cfg)
    }
}

/// The checkpoint tensor named `name`: which copy (0 = parameters, k = optimizer state k − 1)
/// and which parameter.
fn find_tensor(model: &Model, optimizer: Option<&Optimizer>, name: &Str<'_>) -> Option<(usize, ParamInfo)> {
    let (copy, rest) = match name.strip_prefix("optimizer.") {
        Some(rest) => {
            let o = optimizer?;
            (1..=o.state_copies()).find_map(|k| {
                let rest = rest.strip_prefix(o.state_name(k - 1))?;
                Some((k, rest.strip_prefix(".")?))
            })?
        }
        None => (0, *name),
    };
    model.params().find(|p| rest.eq_str(p.name.as_str())).map(|p| (copy, p))
}

fn check_extent(h: &Header<'_>, e: &Entry<'_>, data_len: usize, size: Option<usize>) -> Result<()> {
    let at = e.key_at;
    ensure_bad(e.begin <= e.end && e.end <= data_len, "data_offsets out of bounds", at)?;
    if let Some(size) = size {
        ensure_bad(e.end - e.begin == size, "data_offsets do not match the shape", at)?;
    }
    // Tiling: each tensor starts at 0 or where another ends, and no two start at the same place.
    // With the sizes summing to the data length and one tensor reaching its end, the tensors
    // cover the data exactly once.
    let (mut follows, mut same_start) = (e.begin == 0, 0);
    for other in h.entries() {
        let other = other?;
        follows |= other.end == e.begin && other.end > other.begin;
        same_start += usize::from(other.begin == e.begin);
        if other.key_at != e.key_at && other.name == e.name {
            return Err(bad("tensor name appears twice", other.key_at));
        }
    }
    ensure_bad(follows, "data_offsets overlap or leave a gap", at)?;
    ensure_bad(same_start == 1, "data_offsets overlap", at)
}

fn bad(reason: &'static str, offset: usize) -> Error {
    Error::BadCheckpoint { reason, offset }
}

fn ensure_bad(ok: bool, reason: &'static str, offset: usize) -> Result<()> {
    if ok { Ok(()) } else { Err(bad(reason, offset)) }
}

/// One tensor entry of the header.
#[derive(Clone, Copy, Debug)]
struct Entry<'b> {
    name: Str<'b>,
    /// Offset in the file of the entry's key (for error messages).
    key_at: usize,
    dtype: Str<'b>,
    shape: [usize; 4],
    rank: usize,
    begin: usize,
    end: usize,
}

impl<'b> Entry<'b> {
    fn shape(&self) -> &[usize] {
        &self.shape[..self.rank]
    }

    /// Parse the value of the entry whose key `name` was just read.
    fn parse(p: &mut Parser<'b>, name: Str<'b>) -> Result<Self> {
        let key_at = name.at;
        let mut e =
            Entry { name, key_at, dtype: Str::default(), shape: [0; 4], rank: usize::MAX, begin: 1, end: 0 };
        let mut offsets = false;
        p.object(|p, k| {
            if k.eq_str("dtype") {
                e.dtype = p.string()?;
            } else if k.eq_str("shape") {
                e.rank = 0;
                p.array(|p| {
                    let d = p.number()?;
                    ensure_bad(e.rank < 4, "tensor of rank above 4", p.base + p.at)?;
                    e.shape[e.rank] = d;
                    e.rank += 1;
                    Ok(())
                })?;
            } else if k.eq_str("data_offsets") {
                let mut n = 0;
                p.array(|p| {
                    let v = p.number()?;
                    ensure_bad(n < 2, "data_offsets must be two numbers", p.base + p.at)?;
                    if n == 0 {
                        e.begin = v
                    } else {
                        e.end = v
                    }
                    n += 1;
                    Ok(())
                })?;
                ensure_bad(n == 2, "data_offsets must be two numbers", k.at)?;
                offsets = true;
            } else {
                return Err(bad("unknown field in a tensor entry", k.at));
            }
            Ok(())
        })?;
        ensure_bad(
            e.dtype.raw.is_some() && e.rank != usize::MAX && offsets,
            "tensor entry lacks dtype, shape or data_offsets",
            key_at,
        )?;
        Ok(e)
    }
}

/// Iterator over the header's tensor entries (skipping `__metadata__`).
struct Entries<'b> {
    p: Parser<'b>,
    done: bool,
}

impl<'b> Iterator for Entries<'b> {
    type Item = Result<Entry<'b>>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            let p = &mut self.p;
            p.ws();
            if p.peek() == Some(b',') {
                p.at += 1;
                p.ws();
            }
            if p.peek() == Some(b'}') || p.peek().is_none() {
                self.done = true;
                return None;
            }
            let r = (|| {
                let key = p.string()?;
                p.ws();
                p.expect(b':')?;
                if key.eq_str("__metadata__") {
                    p.object(|p, _| p.string().map(|_| ()))?;
                    return Ok(None);
                }
                Entry::parse(p, key).map(Some)
            })();
            match r {
                Ok(Some(e)) => return Some(Ok(e)),
                Ok(None) => continue,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

/// A JSON string of the header: its raw bytes between the quotes (escapes undecoded) and its
/// offset in the file.
#[derive(Clone, Copy, Debug, Default)]
pub struct Str<'b> {
    raw: Option<&'b [u8]>,
    at: usize,
}

impl PartialEq for Str<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.chars().eq(other.chars())
    }
}

impl<'b> Str<'b> {
    /// The decoded characters (escapes resolved; invalid sequences were rejected by the parser).
    pub fn chars(&self) -> impl Iterator<Item = char> + 'b {
        let raw = self.raw.unwrap_or(&[]);
        let s = core::str::from_utf8(raw).unwrap_or("");
        let mut it = s.chars();
        core::iter::from_fn(move || {
            let c = it.next()?;
            if c != '\\' {
                return Some(c);
            }
            Some(match it.next()? {
                'n' => '\n',
                't' => '\t',
                'r' => '\r',
                'b' => '\u{8}',
                'f' => '\u{c}',
                'u' => {
                    let hex = |it: &mut core::str::Chars<'_>| {
                        (0..4).try_fold(0u32, |v, _| Some(v * 16 + it.next()?.to_digit(16)?))
                    };
                    let hi = hex(&mut it)?;
                    if (0xD800..0xDC00).contains(&hi) {
                        // A surrogate pair: \uD8xx\uDCxx.
                        let (_, _) = (it.next()?, it.next()?);
                        let lo = hex(&mut it)?;
                        char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo.wrapping_sub(0xDC00) & 0x3FF))?
                    } else {
                        char::from_u32(hi)?
                    }
                }
                other => other, // \" \\ \/
            })
        })
    }

    /// True when the decoded string equals `s`.
    pub fn eq_str(&self, s: &str) -> bool {
        self.chars().eq(s.chars())
    }

    /// The decoded string in a fixed-capacity buffer, if it fits.
    pub fn decode<const N: usize>(&self) -> Option<heapless::String<N>> {
        let mut out = heapless::String::new();
        for c in self.chars() {
            out.push(c).ok()?;
        }
        Some(out)
    }

    /// Parse the decoded string as a number.
    pub fn parse<T: core::str::FromStr>(&self) -> Option<T> {
        self.decode::<40>()?.parse().ok()
    }

    fn starts_with(&self, prefix: &str) -> bool {
        let mut c = self.chars();
        prefix.chars().all(|p| c.next() == Some(p))
    }

    /// The rest after `prefix` (only for strings without escapes, as regkern's names are).
    fn strip_prefix(&self, prefix: &str) -> Option<Str<'b>> {
        let raw = self.raw?;
        let rest = raw.strip_prefix(prefix.as_bytes())?;
        Some(Str { raw: Some(rest), at: self.at })
    }
}

/// A small JSON reader over the header: objects, arrays of non-negative integers, strings.
#[derive(Clone, Copy, Debug)]
struct Parser<'b> {
    s: &'b [u8],
    at: usize,
    /// Offset of `s` in the file.
    base: usize,
}

impl<'b> Parser<'b> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn err(&self, reason: &'static str) -> Error {
        bad(reason, self.base + self.at)
    }

    fn expect(&mut self, b: u8) -> Result<()> {
        if self.peek() == Some(b) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.err("malformed header JSON"))
        }
    }

    /// `{ "key": value, ... }`, calling `value` after each key and its colon.
    fn object(&mut self, mut value: impl FnMut(&mut Self, Str<'b>) -> Result<()>) -> Result<()> {
        self.ws();
        self.expect(b'{')?;
        self.ws();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(());
        }
        loop {
            self.ws();
            let key = self.string()?;
            self.ws();
            self.expect(b':')?;
            self.ws();
            value(self, key)?;
            self.ws();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(());
                }
                _ => return Err(self.err("malformed header JSON")),
            }
        }
    }

    /// `[ item, ... ]`.
    fn array(&mut self, mut item: impl FnMut(&mut Self) -> Result<()>) -> Result<()> {
        self.ws();
        self.expect(b'[')?;
        self.ws();
        if self.peek() == Some(b']') {
            self.at += 1;
            return Ok(());
        }
        loop {
            self.ws();
            item(self)?;
            self.ws();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    return Ok(());
                }
                _ => return Err(self.err("malformed header JSON")),
            }
        }
    }

    /// A non-negative integer that fits in usize.
    fn number(&mut self) -> Result<usize> {
        self.ws();
        let start = self.at;
        let mut v: usize = 0;
        while let Some(d @ b'0'..=b'9') = self.peek() {
            v = v
                .checked_mul(10)
                .and_then(|v| v.checked_add(usize::from(d - b'0')))
                .ok_or(self.err("number too large"))?;
            self.at += 1;
        }
        if self.at == start {
            return Err(self.err("expected a non-negative integer"));
        }
        Ok(v)
    }

    /// A string; escapes are validated and left encoded.
    fn string(&mut self) -> Result<Str<'b>> {
        self.ws();
        let at = self.base + self.at;
        self.expect(b'"')?;
        let start = self.at;
        loop {
            match self.peek() {
                None => return Err(self.err("unterminated string in header")),
                Some(b'"') => break,
                Some(b'\\') => {
                    self.at += 1;
                    match self.peek() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.at += 1,
                        Some(b'u') => {
                            let hex = self.s.get(self.at + 1..self.at + 5);
                            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                                return Err(self.err("bad \\u escape in header"));
                            }
                            self.at += 5;
                        }
                        _ => return Err(self.err("bad escape in header")),
                    }
                }
                Some(c) if c < 0x20 => return Err(self.err("control character in a header string")),
                Some(_) => self.at += 1,
            }
        }
        let raw = &self.s[start..self.at];
        self.at += 1;
        if core::str::from_utf8(raw).is_err() {
            return Err(bad("header string is not UTF-8", at));
        }
        Ok(Str { raw: Some(raw), at })
    }
}

/// The JSON header of `model`'s checkpoint.
fn write_header(w: &mut impl Write, model: &Model, training: Option<(&Optimizer, Progress)>) -> fmt::Result {
    w.write_str("{\"__metadata__\":{\"format\":\"pt\"")?;
    let mut meta = |k: &str, v: fmt::Arguments<'_>| write!(w, ",\"regkern.{k}\":\"{v}\"");
    meta("version", format_args!("{}", env!("CARGO_PKG_VERSION")))?;
    config_metadata(model.config(), &mut meta)?;
    if let Some((o, progress)) = training {
        meta("optimizer", format_args!("{}", o.name()))?;
        meta("epochs", format_args!("{}", progress.epochs))?;
        meta("steps", format_args!("{}", progress.steps))?;
    }
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
        ModelConfig::Linear(c) => {
            meta("type", format_args!("linear"))?;
            meta("n_in", format_args!("{}", c.n_in))?;
            meta("n_out", format_args!("{}", c.n_out))
        }
        ModelConfig::Mlp(c) => {
            meta("type", format_args!("nlinear"))?;
            meta("n_in", format_args!("{}", c.n_in))?;
            meta("latent_dims", format_args!("{}", Dims(&c.latent_dims)))?;
            meta("n_out", format_args!("{}", c.n_out))?;
            meta("act", format_args!("{}", c.act.name()))
        }
        ModelConfig::Transformer(c) => {
            meta("type", format_args!("transformer"))?;
            meta("num_layers", format_args!("{}", c.num_layers))?;
            meta("autoregressive", format_args!("{}", c.autoregressive))?;
            stack_metadata(c, meta)
        }
        ModelConfig::EncoderDecoder(c) => {
            meta("type", format_args!("encoder_decoder"))?;
            meta("num_encoder_layers", format_args!("{}", c.num_encoder_layers))?;
            meta("num_decoder_layers", format_args!("{}", c.num_decoder_layers))?;
            stack_metadata(&TransformerConfig { kv_cache: c.kv_cache, ..c.encoder() }, meta)
        }
    }
}

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

/// Counts the bytes written.
struct Counter(usize);

impl Write for Counter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0 = self.0.checked_add(s.len()).ok_or(fmt::Error)?;
        Ok(())
    }
}

/// Writes into a byte slice; fails when it is full.
struct SliceWriter<'o> {
    buf: &'o mut [u8],
    at: usize,
}

impl Write for SliceWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let dst = self.buf.get_mut(self.at..self.at + s.len()).ok_or(fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.at += s.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{Mode, Net};
    use crate::{Activation, Trainer};

    fn mlp() -> ModelConfig {
        ModelConfig::Mlp(MlpConfig {
            n_in: 3,
            latent_dims: heapless::Vec::from_slice(&[4, 2]).unwrap(),
            n_out: 2,
            act: Activation::Tanh,
        })
    }

    fn saved(cfg: &ModelConfig, seed: u64) -> (Model, Vec<f32>, Vec<u8>) {
        let model = Model::plan(cfg, Mode::Inference { max_batch: 1 }).unwrap();
        let mut arena = vec![0.0; model.report().total_floats()];
        let mut net = Net::new(model.clone(), &mut arena).unwrap();
        net.init_params(seed);
        let mut out = vec![0u8; net.checkpoint_len().unwrap()];
        let n = net.save_checkpoint(&mut out).unwrap();
        assert_eq!(n, out.len(), "saved_len is exact for parameters");
        let params = packed(&model, net.params());
        (model, params, out)
    }

    /// A file from a header (JSON text) and data bytes.
    fn file(header: &str, data: &[u8]) -> Vec<u8> {
        let mut f = (header.len() as u64).to_le_bytes().to_vec();
        f.extend_from_slice(header.as_bytes());
        f.extend_from_slice(data);
        f
    }

    /// The parameters in table order, without the padding between tensors.
    fn packed(model: &Model, params: &[f32]) -> Vec<f32> {
        model.params().flat_map(|p| params[p.slot.range()].to_vec()).collect()
    }

    /// Load into a params region filled with 7.0; returns the tensors' values.
    fn load_into(model: &Model, bytes: &[u8]) -> (Result<()>, Vec<f32>) {
        let mut params = vec![7.0; model.report().floats(Region::Params)];
        let r = load(bytes, model, &mut params, None).map(|_| ());
        (r, packed(model, &params))
    }

    fn reason(r: Result<()>) -> &'static str {
        match r {
            Err(Error::BadCheckpoint { reason, .. }) => reason,
            other => panic!("expected BadCheckpoint, got {other:?}"),
        }
    }

    #[test]
    fn every_model_type_round_trips_with_its_config() {
        let t = TransformerConfig {
            embed_dim: 8,
            ffn_dim: 6,
            num_heads: 2,
            num_groups: 1,
            max_seq_len: 5,
            ..Default::default()
        };
        let moe = MoeConfig { num_experts: 3, top_k: 2, capacity: Capacity::Absolute(4), alpha: 0.05 };
        let configs = [
            ModelConfig::Linear(LinearConfig { n_in: 8, n_out: 1 }),
            mlp(),
            ModelConfig::Transformer(t),
            ModelConfig::Transformer(TransformerConfig {
                autoregressive: true,
                kv_cache: Some(KvDtype::Bf16),
                attention: AttentionType::Mha,
                ..t
            }),
            ModelConfig::Transformer(TransformerConfig {
                moe: Some(MoeConfig { capacity: Capacity::Factor(1.25), ..moe }),
                ..t
            }),
            ModelConfig::EncoderDecoder(EncoderDecoderConfig {
                embed_dim: 8,
                ffn_dim: 6,
                num_heads: 2,
                num_groups: 2,
                num_encoder_layers: 1,
                num_decoder_layers: 2,
                max_seq_len: 4,
                input_dim: 2,
                output_dim: 3,
                moe: Some(moe),
                kv_cache: Some(KvDtype::F16),
                ..Default::default()
            }),
        ];
        for cfg in configs {
            let (model, params, bytes) = saved(&cfg, 3);
            let (r, loaded) = load_into(&model, &bytes);
            r.unwrap();
            assert_eq!(loaded, params, "{cfg:?}");
            let h = Header::parse(&bytes).unwrap();
            assert_eq!(h.config().unwrap(), cfg);
            assert!(h.metadata("format").unwrap().eq_str("pt"));
            assert_eq!(bytes[8..8 + h.json.len()].len() % 8, 0, "data aligned to 8 bytes");
            assert!(h.progress().is_none());
        }
    }

    #[test]
    fn header_is_the_safetensors_layout() {
        let cfg = ModelConfig::Linear(LinearConfig { n_in: 2, n_out: 1 });
        let (_, params, bytes) = saved(&cfg, 1);
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let json = core::str::from_utf8(&bytes[8..8 + n]).unwrap().trim_end();
        assert_eq!(
            json,
            concat!(
                "{\"__metadata__\":{\"format\":\"pt\",\"regkern.version\":\"",
                env!("CARGO_PKG_VERSION"),
                "\",\"regkern.type\":\"linear\",\"regkern.n_in\":\"2\",\"regkern.n_out\":\"1\"},",
                "\"linear.weight\":{\"dtype\":\"F32\",\"shape\":[1,2],\"data_offsets\":[0,8]},",
                "\"linear.bias\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}"
            )
        );
        let data: Vec<f32> =
            bytes[8 + n..].chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
        assert_eq!(data, params);
    }

    #[test]
    fn tensors_in_any_order_load_when_they_tile_the_data() {
        // As Python's safetensors writes them: sorted by name, not in state_dict order.
        let cfg = ModelConfig::Linear(LinearConfig { n_in: 2, n_out: 1 });
        let model = Model::plan(&cfg, Mode::Inference { max_batch: 1 }).unwrap();
        let data: Vec<u8> = [0.5f32, 1.0, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let h = r#"{"linear.bias":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"linear.weight":{"dtype":"F32","shape":[1,2],"data_offsets":[4,12]},"__metadata__":{"format":"pt"}}"#;
        let (r, params) = load_into(&model, &file(h, &data));
        r.unwrap();
        assert_eq!(params, [1.0, 2.0, 0.5]);
        // Without regkern metadata there is no config to read.
        assert!(matches!(Header::parse(&file(h, &data)).unwrap().config(), Err(Error::BadCheckpoint { .. })));
    }

    #[test]
    fn bad_files_are_errors_and_load_nothing() {
        let cfg = ModelConfig::Linear(LinearConfig { n_in: 2, n_out: 1 });
        let model = Model::plan(&cfg, Mode::Inference { max_batch: 1 }).unwrap();
        let data: Vec<u8> = [0.5f32, 1.0, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let entry = |name: &str, dtype: &str, shape: &str, a: usize, b: usize| {
            format!(r#""{name}":{{"dtype":"{dtype}","shape":{shape},"data_offsets":[{a},{b}]}}"#)
        };
        let w = |a, b| entry("linear.weight", "F32", "[1,2]", a, b);
        let bias = |a, b| entry("linear.bias", "F32", "[1]", a, b);
        let padded = [&data[..], &[0, 0, 0, 0]].concat();
        let cases: Vec<(String, &[u8], &str)> = vec![
            (format!("{{{},{}}}", w(0, 8), bias(4, 12)), &data, "data_offsets do not match the shape"),
            (format!("{{{},{}}}", w(0, 8), bias(8, 16)), &data, "data_offsets out of bounds"),
            (format!("{{{},{}}}", w(4, 12), bias(0, 4)), &data, ""), // valid: reordered
            (format!("{{{},{}}}", w(0, 8), bias(0, 4)), &data, "data_offsets overlap"),
            (
                format!(
                    "{{{},{}}}",
                    entry("linear.weight", "F32", "[1,2]", 0, 8),
                    entry("linear.bias", "F32", "[1]", 4, 8)
                ),
                &data,
                "data_offsets overlap or leave a gap",
            ),
            (format!("{{{},{}}}", w(0, 8), bias(8, 12)), &data[..11], "data_offsets out of bounds"),
            (
                format!("{{{},{},\"x\":{{}}}}", w(0, 8), bias(8, 12)),
                &data,
                "tensor entry lacks dtype, shape or data_offsets",
            ),
            (
                format!("{{{},{}}}", entry("linear.weight", "F16", "[1,2]", 0, 8), bias(8, 12)),
                &data,
                "dtype must be F32",
            ),
            (
                format!("{{{},{}}}", entry("linear.weight", "F32", "[2,1]", 0, 8), bias(8, 12)),
                &data,
                "shape differs from the model's",
            ),
            (
                format!("{{{},{}}}", entry("linear.weights", "F32", "[1,2]", 0, 8), bias(8, 12)),
                &data,
                "tensor name not in the model",
            ),
            (format!("{{{}}}", w(0, 8)), &data[..8], "tensors missing: every parameter must be present"),
            (format!("{{{},{},{}}}", w(0, 8), bias(8, 12), bias(8, 12)), &data, "tensor name appears twice"),
            (format!("{{{},{}}}", w(0, 8), bias(8, 12)), &padded, "tensors do not tile the data exactly"),
            (format!("{{{},{}", w(0, 8), bias(8, 12)), &data, "malformed header JSON"),
            (format!("{{{},{}}} x", w(0, 8), bias(8, 12)), &data, "bytes after the header's JSON object"),
            (format!("[{},{}]", w(0, 8), bias(8, 12)), &data, "header is not a JSON object"),
            (
                format!("{{{},{}}}", entry("linear.weight", "F32", "[1,-2]", 0, 8), bias(8, 12)),
                &data,
                "expected a non-negative integer",
            ),
            (
                format!("{{{},{}}}", entry("linear.weight", "F32", "[1,2]", 0, 8), bias(8, 12))
                    .replace("[0,8]", "[0,99999999999999999999]"),
                &data,
                "number too large",
            ),
            (
                format!("{{\"__metadata__\":{{\"a\":1}},{},{}}}", w(0, 8), bias(8, 12)),
                &data,
                "malformed header JSON",
            ),
            (
                format!("{{{},{}}}", w(0, 8), bias(8, 12)).replace("linear.bias", "linear.b\\q"),
                &data,
                "bad escape in header",
            ),
        ];
        for (header, data, want) in cases {
            let bytes = file(&header, data);
            let (r, params) = load_into(&model, &bytes);
            if want.is_empty() {
                r.unwrap();
                continue;
            }
            assert_eq!(reason(r), want, "{header}");
            assert_eq!(params, [7.0; 3], "{header}: nothing is written on error");
        }
        // Framing: shorter than 8 bytes, a header length past the end or above the cap.
        let good = file(&format!("{{{},{}}}", w(0, 8), bias(8, 12)), &data);
        assert_eq!(reason(load_into(&model, &good[..5]).0), "file shorter than its 8-byte header length");
        let mut long = good.clone();
        long[..8].copy_from_slice(&(good.len() as u64).to_le_bytes());
        assert_eq!(reason(load_into(&model, &long).0), "header length beyond the end of the file");
        long[..8].copy_from_slice(&(MAX_HEADER as u64 + 1).to_le_bytes());
        assert_eq!(reason(load_into(&model, &long).0), "header larger than 100 MB");
        long[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(reason(load_into(&model, &long).0), "header larger than 100 MB");
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_handled_without_panic() {
        let (model, params, bytes) = saved(&mlp(), 5);
        for len in 0..bytes.len() {
            let (r, loaded) = load_into(&model, &bytes[..len]);
            assert!(r.is_err(), "a file cut at {len} of {} bytes loads", bytes.len());
            assert!(loaded.iter().all(|&v| v == 7.0));
        }
        let header = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        for i in 0..header {
            for flip in [0x01u8, 0x20, 0x80] {
                let mut b = bytes.clone();
                b[i] ^= flip;
                let (r, loaded) = load_into(&model, &b);
                // Some flips are harmless (a metadata character, a space); the rest are errors.
                if r.is_ok() {
                    assert_eq!(loaded, params, "byte {i} ^ {flip:#x}");
                } else {
                    assert!(loaded.iter().all(|&v| v == 7.0));
                }
            }
        }
    }

    #[test]
    fn a_checkpoint_of_another_model_is_refused() {
        let (_, _, bytes) = saved(&mlp(), 1);
        let other = ModelConfig::Mlp(MlpConfig {
            n_in: 3,
            latent_dims: heapless::Vec::from_slice(&[5, 2]).unwrap(),
            n_out: 2,
            act: Activation::Tanh,
        });
        let model = Model::plan(&other, Mode::Inference { max_batch: 1 }).unwrap();
        assert_eq!(reason(load_into(&model, &bytes).0), "shape differs from the model's");
        let small = vec![0u8; 10];
        let mut arena = vec![0.0; model.report().total_floats()];
        let net = Net::new(model, &mut arena).unwrap();
        let mut out = small;
        assert!(matches!(
            net.save_checkpoint(&mut out),
            Err(Error::BadLen { what: "checkpoint buffer", .. })
        ));
    }

    #[test]
    fn training_checkpoints_carry_optimizer_state_and_progress() {
        for optimizer in
            [Optimizer::adam(1e-2), Optimizer::sgd(0.1).with_momentum(0.9).unwrap(), Optimizer::rmsprop(1e-2)]
        {
            let model = Model::plan(&mlp(), Mode::Training { max_batch: 4, optimizer }).unwrap();
            let mut arena = vec![0.0; model.report().total_floats()];
            let mut net = Net::new(model.clone(), &mut arena).unwrap();
            net.init_params(2);
            let config =
                crate::TrainConfig { epochs: 1, schedule: crate::Schedule::Constant, clip_grad_norm: None };
            let mut trainer = Trainer::new(net, optimizer, config).unwrap();
            let (x, y) = ([0.1f32, -0.3, 0.5, 0.2, 0.7, -0.1], [0.3f32, -0.2, 0.1, 0.4]);
            for _ in 0..3 {
                trainer.train_step(&x, &y).unwrap();
            }
            let mut bytes = vec![0u8; trainer.checkpoint_len().unwrap()];
            let n = trainer.save_checkpoint(&mut bytes).unwrap();
            let bytes = &bytes[..n];
            let h = Header::parse(bytes).unwrap();
            assert_eq!(h.progress(), Some(Progress { epochs: 0, steps: 3 }));
            assert!(h.optimizer_name().unwrap().eq_str(optimizer.name()));
            // A fresh trainer resumes exactly: the next step gives identical parameters.
            let mut arena2 = vec![0.0; model.report().total_floats()];
            let net2 = Net::new(model.clone(), &mut arena2).unwrap();
            let mut resumed = Trainer::new(net2, optimizer, config).unwrap();
            assert_eq!(resumed.load_checkpoint(bytes).unwrap(), Progress { epochs: 0, steps: 3 });
            assert_eq!(resumed.steps(), 3);
            trainer.train_step(&x, &y).unwrap();
            resumed.train_step(&x, &y).unwrap();
            assert_eq!(trainer.net().params(), resumed.net().params(), "{}", optimizer.name());
            // Its parameters alone load into an inference net (the optimizer state is skipped).
            let infer = Model::plan(&mlp(), Mode::Inference { max_batch: 1 }).unwrap();
            let (r, _) = load_into(&infer, bytes);
            r.unwrap();
            // A parameters-only checkpoint cannot resume training.
            let mut plain = vec![0u8; resumed.net().checkpoint_len().unwrap()];
            resumed.net().save_checkpoint(&mut plain).unwrap();
            assert!(matches!(resumed.load_checkpoint(&plain), Err(Error::BadCheckpoint { .. })));
        }
    }
}
