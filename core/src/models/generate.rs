//! Greedy generation for autoregressive transformers: each prediction is fed back as the next
//! input (SPEC §3.7).
//!
//! **Expanding context** keeps every value, up to `max_seq_len` positions. **Sliding window `W`**
//! keeps the last W values, re-embedded at positions `0..W` of the window.
//!
//! With the KV cache, a new token costs O(context): its keys and values are appended and only its
//! query attends. Without it, every step re-runs the whole context. Both give the same values
//! (to f32 rounding with an f32 cache; f16/bf16 caches round the stored keys and values).
//!
//! **The cache and a sliding window.** Positions are learned embeddings added to the input, so
//! every cached key and value depends on its token's position. When the window slides, every
//! token moves down one position: every cached key and value becomes stale at once, and no part
//! of the cache can be reused. So the cache serves while the context grows to W; from the first
//! slide on, each step recomputes the window (as uncached generation does). That keeps sliding
//! generation exact, at the uncached cost per token once the window is full.

use crate::error::{Error, Result, check_len, ensure, mul};
use crate::models::transformer::Decode;
use crate::models::{Arch, Net};

/// Streaming decoding through the KV cache: push one value per sequence, get each sequence's
/// prediction for the next position. For inputs that arrive one at a time (a sensor stream), and
/// the building block of cached generation. Positions run from 0 to `max_seq_len − 1`.
#[derive(Debug)]
pub struct Decoder<'n, 'a> {
    net: &'n mut Net<'a>,
    dec: Decode,
    n: usize,
    pos: usize,
}

impl<'a> Net<'a> {
    /// A streaming decoder for `n` sequences, starting at position 0. Needs an autoregressive
    /// transformer planned with a KV cache, and `n` within the planned batch.
    pub fn decoder(&mut self, n: usize) -> Result<Decoder<'_, 'a>> {
        let Arch::Transformer(t) = &self.model.arch else {
            return Err(Error::BadConfig { field: "decoder", reason: "needs an autoregressive transformer" });
        };
        ensure(self.model.per_token, "decoder", "needs an autoregressive transformer")?;
        let dec = t.decoder().ok_or(Error::BadConfig {
            field: "kv_cache",
            reason: "was not planned: set kv_cache in the config",
        })?;
        self.check_batch(n)?;
        Ok(Decoder { net: self, dec, n, pos: 0 })
    }
}

impl Decoder<'_, '_> {
    /// Feed each sequence's value at the current position (`x`: n × input_dim) and write each
    /// prediction for the next one (`out`: n × output_dim). `ContextTooLong` past `max_seq_len`.
    pub fn push(&mut self, x: &[f32], out: &mut [f32]) -> Result<()> {
        let (m, bufs) = (&self.net.model, &mut self.net.bufs);
        check_len("x", x.len(), self.n * m.in_dim)?;
        check_len("out", out.len(), self.n * m.out_dim)?;
        if self.pos >= m.max_seq {
            return Err(Error::ContextTooLong { needed: self.pos + 1, max: m.max_seq });
        }
        let Arch::Transformer(t) = &m.arch else {
            return Err(Error::BadConfig { field: "decoder", reason: "needs an autoregressive transformer" });
        };
        self.dec.token_mut(bufs, self.n).copy_from_slice(x);
        t.decode_step(&self.dec, bufs, self.n, self.pos, None);
        self.dec.copy_prediction(bufs, self.n, out, (1, 0));
        self.pos += 1;
        Ok(())
    }

    /// Positions fed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Forget positions `pos..` (the cache keeps `0..pos`), e.g. to branch from a prefix.
    pub fn truncate(&mut self, pos: usize) -> Result<()> {
        ensure(pos <= self.pos, "pos", "is beyond the positions fed so far")?;
        self.pos = pos;
        Ok(())
    }
}

/// How much context a generation step sees.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Context {
    /// Every value so far, up to `max_seq_len`.
    #[default]
    Expanding,
    /// The last `window` values (1 ≤ window ≤ max_seq_len), at positions `0..window`.
    Sliding {
        /// Values kept.
        window: usize,
    },
}

/// A generation request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Generate {
    /// Values to generate per sequence (≥ 1).
    pub steps: usize,
    /// Expanding or sliding context.
    pub context: Context,
    /// Use the KV cache (the model must be planned with one).
    pub use_cache: bool,
}

impl Net<'_> {
    /// Generate `g.steps` values after each prompt. `prompt` holds n sequences of `prompt_len`
    /// values (n × prompt_len × input_dim); `out` receives n × steps × output_dim. Nothing is
    /// allocated; the net's sequence length is restored afterwards.
    ///
    /// Errors: a model that is not autoregressive or whose input and output widths differ;
    /// zero steps; a prompt longer than the context; a window of 0 or beyond `max_seq_len`; an
    /// expanding context that would pass `max_seq_len` (`ContextTooLong`); `out` of the wrong
    /// size; more sequences than planned; a cache requested but not planned.
    pub fn generate(
        &mut self,
        prompt: &[f32],
        prompt_len: usize,
        out: &mut [f32],
        g: Generate,
    ) -> Result<()> {
        let m = &self.model;
        let (dim, max_seq) = (m.in_dim, m.max_seq);
        let Arch::Transformer(t) = &m.arch else {
            return Err(Error::BadConfig {
                field: "generate",
                reason: "needs an autoregressive transformer",
            });
        };
        ensure(
            m.per_token && m.out_dim == dim,
            "generate",
            "needs an autoregressive model with input_dim == output_dim",
        )?;
        ensure(g.steps > 0, "steps", "must be at least 1")?;
        ensure(prompt_len > 0, "prompt", "must hold at least one value")?;
        let window = match g.context {
            Context::Expanding => max_seq,
            Context::Sliding { window } => {
                ensure(window > 0, "window", "must be at least 1")?;
                ensure(window <= max_seq, "window", "must not exceed max_seq_len")?;
                window
            }
        };
        ensure(prompt_len <= window, "prompt", "is longer than the context (max_seq_len or window)")?;
        // The last value generated is predicted from prompt_len + steps − 1 values.
        let needed = prompt_len.saturating_add(g.steps - 1);
        if g.context == Context::Expanding && needed > max_seq {
            return Err(Error::ContextTooLong { needed, max: max_seq });
        }
        let n = prompt.len() / (prompt_len * dim);
        check_len("prompt", prompt.len(), n * prompt_len * dim)?;
        self.check_batch(n)?;
        check_len("out", out.len(), mul(mul(n, g.steps)?, dim)?)?;
        let decoder = match (g.use_cache, t.decoder()) {
            (false, _) => None,
            (true, Some(dec)) => Some(dec),
            (true, None) => {
                return Err(Error::BadConfig {
                    field: "kv_cache",
                    reason: "was not planned: set kv_cache in the config",
                });
            }
        };
        let saved_seq = self.seq;
        let result = match decoder {
            Some(dec) => self.generate_cached(&dec, prompt, prompt_len, out, (n, g.steps, window)),
            None => self.generate_recompute(prompt, prompt_len, out, (n, g.steps, window), 0),
        };
        self.seq = saved_seq;
        result
    }

    /// Decode step by step through the cache while the context only grows; if a sliding window
    /// fills, hand the remaining steps to [`Net::generate_recompute`].
    fn generate_cached(
        &mut self,
        dec: &Decode,
        prompt: &[f32],
        prompt_len: usize,
        out: &mut [f32],
        (n, steps, window): (usize, usize, usize),
    ) -> Result<()> {
        let (model, bufs) = (&self.model, &mut self.bufs);
        let Arch::Transformer(t) = &model.arch else {
            return Err(Error::BadConfig {
                field: "generate",
                reason: "needs an autoregressive transformer",
            });
        };
        let dim = model.in_dim;
        // Prefill: positions 0..prompt_len; the last one predicts the first new value.
        for pos in 0..prompt_len {
            let tok = dec.token_mut(bufs, n);
            for (b, v) in tok.chunks_exact_mut(dim).enumerate() {
                v.copy_from_slice(&prompt[(b * prompt_len + pos) * dim..][..dim]);
            }
            t.decode_step(dec, bufs, n, pos, None);
        }
        dec.copy_prediction(bufs, n, out, (steps, 0));
        for s in 1..steps {
            let known = prompt_len + s;
            if known > window {
                // The window slides from here on: every position shifts, the cache is stale.
                return self.generate_recompute(prompt, prompt_len, out, (n, steps, window), s);
            }
            let tok = dec.token_mut(bufs, n);
            for (b, v) in tok.chunks_exact_mut(dim).enumerate() {
                v.copy_from_slice(&out[(b * steps + s - 1) * dim..][..dim]);
            }
            t.decode_step(dec, bufs, n, known - 1, None);
            dec.copy_prediction(bufs, n, out, (steps, s));
        }
        Ok(())
    }

    /// Steps `first..steps` by running the whole context (the last `window` values) each time.
    fn generate_recompute(
        &mut self,
        prompt: &[f32],
        prompt_len: usize,
        out: &mut [f32],
        (n, steps, window): (usize, usize, usize),
        first: usize,
    ) -> Result<()> {
        let dim = self.model.in_dim;
        for s in first..steps {
            let known = prompt_len + s;
            let ctx = known.min(window);
            self.seq = ctx;
            let x = self.input_mut(n)?;
            for b in 0..n {
                for (i, v) in x[b * ctx * dim..][..ctx * dim].chunks_exact_mut(dim).enumerate() {
                    // Value number `known − ctx + i` of sequence b: from the prompt, or generated.
                    let at = known - ctx + i;
                    let src = if at < prompt_len {
                        &prompt[(b * prompt_len + at) * dim..][..dim]
                    } else {
                        &out[(b * steps + at - prompt_len) * dim..][..dim]
                    };
                    v.copy_from_slice(src);
                }
            }
            let y = self.forward_in_place(n)?;
            for b in 0..n {
                let last = &y[(b * ctx + ctx - 1) * dim..][..dim];
                out[(b * steps + s) * dim..][..dim].copy_from_slice(last);
            }
        }
        Ok(())
    }
}
