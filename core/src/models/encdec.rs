//! Encoder-decoder transformer for sequence-to-sequence regression (SPEC §3.6).
//!
//! ```text
//! source (B, S, in) → encoder: input_proj, pos_embed, L_enc × block, final_norm → memory (B, S, E)
//! target shifted right, 0.0 first (B, T, out) → decoder: input_proj, pos_embed,
//!     L_dec × [x += self_attn(norm1 x) (causal); x += cross_attn(norm2 x, memory); x += ffn(norm3 x)],
//!     final_norm → head → (B, T, out)
//! ```
//! Names: `encoder.*`, `decoder.*` (blocks with `self_attn`, `cross_attn`, `norm3`), then `head`.
//! The two halves are the same [`Transformer`] stack in the roles `Encoder` and `Decoder`,
//! planned into one arena; the decoder's cross-attention reads the encoder's output in place and
//! adds its gradient into one buffer, from which the encoder's backward starts.
//!
//! Training and validation are teacher-forced. Inference ([`crate::Net::predict`]) decodes
//! greedily: the encoder runs once; each step feeds the previous prediction back.

use crate::arena::{Buffers, Planner, Region, Slot};
use crate::error::{Result, ensure, mul};
use crate::layers::moe::MoeStats;
use crate::layers::{Activation, KvDtype};
use crate::models::ParamInfo;
use crate::models::transformer::{
    AttentionType, MemorySlots, MoeConfig, Role, Transformer, TransformerConfig,
};

/// User hyperparameters of an encoder-decoder (`--type transformer --encoderdecoder`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EncoderDecoderConfig {
    /// Features per source token.
    pub input_dim: usize,
    /// Features per target token (the decoder reads targets, so its input width too).
    pub output_dim: usize,
    /// Model width E.
    pub embed_dim: usize,
    /// FFN hidden width F.
    pub ffn_dim: usize,
    /// Encoder blocks (`--num_encoder_layers`).
    pub num_encoder_layers: usize,
    /// Decoder blocks (`--num_decoder_layers`).
    pub num_decoder_layers: usize,
    /// Query heads H.
    pub num_heads: usize,
    /// Key/value groups for GQA.
    pub num_groups: usize,
    /// MHA, MQA or GQA, in every attention (self and cross).
    pub attention: AttentionType,
    /// Longest source and target sequence (rows of each `pos_embed`).
    pub max_seq_len: usize,
    /// FFN activation.
    pub ffn_act: Activation,
    /// Mixture-of-Experts FFNs in both stacks.
    pub moe: Option<MoeConfig>,
    /// Plan caches for greedy decoding: the decoder's self-attention KV cache of this type, and
    /// the cross-attention keys and values of the memory (f32).
    pub kv_cache: Option<KvDtype>,
}

impl Default for EncoderDecoderConfig {
    /// SPEC §3.3's transformer defaults in both stacks, 2 encoder and 2 decoder blocks.
    fn default() -> Self {
        Self::from_stack(&TransformerConfig::default(), 2, 2)
    }
}

impl EncoderDecoderConfig {
    /// Both stacks with the widths, attention, FFN, MoE and cache of `t` (its `num_layers` and
    /// `autoregressive` are not used), `num_encoder_layers` and `num_decoder_layers` blocks.
    pub fn from_stack(t: &TransformerConfig, num_encoder_layers: usize, num_decoder_layers: usize) -> Self {
        EncoderDecoderConfig {
            input_dim: t.input_dim,
            output_dim: t.output_dim,
            embed_dim: t.embed_dim,
            ffn_dim: t.ffn_dim,
            num_encoder_layers,
            num_decoder_layers,
            num_heads: t.num_heads,
            num_groups: t.num_groups,
            attention: t.attention,
            max_seq_len: t.max_seq_len,
            ffn_act: t.ffn_act,
            moe: t.moe,
            kv_cache: t.kv_cache,
        }
    }

    const fn stack(&self, layers: usize) -> TransformerConfig {
        TransformerConfig {
            input_dim: self.input_dim,
            output_dim: self.output_dim,
            embed_dim: self.embed_dim,
            ffn_dim: self.ffn_dim,
            num_layers: layers,
            num_heads: self.num_heads,
            num_groups: self.num_groups,
            attention: self.attention,
            max_seq_len: self.max_seq_len,
            ffn_act: self.ffn_act,
            autoregressive: false,
            kv_cache: None,
            moe: self.moe,
        }
    }

    /// The encoder stack's config (non-causal): the widths, attention and FFN both stacks share,
    /// with `num_encoder_layers` blocks.
    pub const fn encoder(&self) -> TransformerConfig {
        self.stack(self.num_encoder_layers)
    }

    /// The decoder stack's config: it reads targets, attends causally, predicts every position.
    pub(crate) const fn decoder(&self) -> TransformerConfig {
        TransformerConfig {
            input_dim: self.output_dim,
            autoregressive: true,
            kv_cache: self.kv_cache,
            ..self.stack(self.num_decoder_layers)
        }
    }

    /// Key/value heads of every attention: H (MHA), 1 (MQA) or G (GQA).
    pub fn kv_heads(&self) -> usize {
        self.encoder().kv_heads()
    }

    /// Check every field; the messages name the CLI flag.
    pub fn validate(&self) -> Result<()> {
        ensure(self.num_encoder_layers > 0, "num_encoder_layers", "must be at least 1")?;
        ensure(self.num_decoder_layers > 0, "num_decoder_layers", "must be at least 1")?;
        self.encoder().validate()?;
        self.decoder().validate()
    }
}

/// A planned encoder-decoder: two stacks, the decoder's input and the memory's gradient.
#[derive(Clone, Debug)]
pub struct EncoderDecoder {
    cfg: EncoderDecoderConfig,
    enc: Transformer,
    dec: Transformer,
    /// The decoder's input (acts): the target shifted right, or the predictions so far.
    dec_in: Slot,
    /// d(memory) (act_grads, training).
    dmemory: Slot,
}

impl EncoderDecoder {
    /// Check the config and lay out both stacks for `max_batch` pairs of sequences of at most `t`
    /// tokens each.
    pub(crate) fn plan(
        cfg: &EncoderDecoderConfig,
        (max_batch, t): (usize, usize),
        (training, lean): (bool, bool),
        p: &mut Planner,
    ) -> Result<Self> {
        cfg.validate()?;
        let keep = (training, lean);
        let enc = Transformer::plan_role(&cfg.encoder(), Role::Encoder, (max_batch, t), keep, p)?;
        let role = Role::Decoder { max_src: t };
        let dec = Transformer::plan_role(&cfg.decoder(), role, (max_batch, t), keep, p)?;
        let dec_in = p.take(Region::Acts, mul(mul(max_batch, t)?, cfg.output_dim)?)?;
        let dmemory = if training {
            p.take(Region::ActGrads, mul(mul(max_batch, t)?, cfg.embed_dim)?)?
        } else {
            Slot::default()
        };
        Ok(EncoderDecoder { cfg: *cfg, enc, dec, dec_in, dmemory })
    }

    /// Run every product of both stacks on `kernels` from now on.
    pub(crate) fn set_kernels(&mut self, kernels: crate::ops::Kernels) {
        self.enc.set_kernels(kernels);
        self.dec.set_kernels(kernels);
    }

    fn memory(&self, src: usize) -> MemorySlots {
        MemorySlots { acts: self.enc.memory_slot(), grads: self.dmemory, len: src }
    }

    /// Number of parameter tensors: the encoder's, then the decoder's (ending with `head`).
    pub(crate) fn param_count(&self) -> usize {
        self.enc.param_count() + self.dec.param_count()
    }

    /// Floats of all parameter tensors, in O(1).
    pub(crate) fn param_floats(&self) -> usize {
        self.enc.param_floats() + self.dec.param_floats()
    }

    /// The `i`-th parameter tensor, in PyTorch `state_dict` order.
    pub(crate) fn param(&self, i: usize) -> Option<ParamInfo> {
        let ne = self.enc.param_count();
        if i < ne { self.enc.param(i) } else { self.dec.param(i - ne) }
    }

    /// Where the decoder's predictions lie (acts): (B, T, output_dim).
    pub(crate) fn output(&self) -> Slot {
        self.dec.output()
    }

    /// Where backward reads dL/d(output) (act_grads).
    pub(crate) fn doutput(&self) -> Slot {
        self.dec.doutput()
    }

    /// Where backward leaves dL/d(source) (act_grads).
    pub(crate) fn dinput(&self) -> Slot {
        self.enc.dinput()
    }

    /// Routing statistics of both stacks' last forward passes (MoE models).
    pub(crate) fn moe_stats(&self, acts: &[f32]) -> Option<MoeStats> {
        let (e, d) = (self.enc.moe_stats(acts)?, self.dec.moe_stats(acts)?);
        Some(MoeStats {
            assignments: e.assignments + d.assignments,
            dropped: e.dropped + d.dropped,
            aux: e.aux + d.aux,
        })
    }

    /// Teacher-forced forward pass: source from `acts[inp]` (batch × src), targets from
    /// `acts[target]` (batch × tgt), shifted right into the decoder's input.
    pub(crate) fn forward(
        &self,
        bufs: &mut Buffers<'_>,
        (inp, target): (Slot, Slot),
        batch: usize,
        (src, tgt): (usize, usize),
    ) {
        let od = self.cfg.output_dim;
        self.enc.forward(bufs, inp, (batch, src), None);
        let [y, x] = bufs
            .acts
            .get_disjoint_mut([target.prefix(batch * tgt * od), self.dec_in.prefix(batch * tgt * od)])
            .expect("planned slots are disjoint");
        for (ys, xs) in y.chunks_exact(tgt * od).zip(x.chunks_exact_mut(tgt * od)) {
            xs[..od].fill(0.0);
            xs[od..].copy_from_slice(&ys[..(tgt - 1) * od]);
        }
        self.dec.forward(bufs, self.dec_in, (batch, tgt), Some(&self.memory(src)));
    }

    /// Backward of [`EncoderDecoder::forward`]: the decoder, which fills d(memory), then the
    /// encoder from it.
    pub(crate) fn backward(
        &self,
        bufs: &mut Buffers<'_>,
        inp: Slot,
        batch: usize,
        (src, tgt): (usize, usize),
    ) {
        bufs.act_grads[self.dmemory.prefix(batch * src * self.cfg.embed_dim)].fill(0.0);
        self.dec.backward(bufs, self.dec_in, (batch, tgt), Some(&self.memory(src)));
        self.enc.backward(bufs, inp, (batch, src), Some(&self.memory(src)));
    }

    /// Greedy decoding of `tgt` values per sequence for the sources in `acts[inp]`, leaving the
    /// predictions in the output slot (batch × tgt × output_dim). The encoder runs once. Without
    /// the cache the decoder re-runs on the growing prefix; with it, one position per step, the
    /// cross-attention's keys and values computed once per sequence.
    pub(crate) fn greedy(
        &self,
        bufs: &mut Buffers<'_>,
        inp: Slot,
        batch: usize,
        (src, tgt): (usize, usize),
        use_cache: bool,
    ) {
        let od = self.cfg.output_dim;
        self.enc.forward(bufs, inp, (batch, src), None);
        let mem = self.memory(src);
        let out = self.dec.output();
        match self.dec.decoder().filter(|_| use_cache) {
            Some(dec) => {
                self.dec.prepare_cross(&dec, bufs, batch, mem);
                for t in 0..tgt {
                    // Position t reads the previous prediction (0.0 to start).
                    if t == 0 {
                        dec.token_mut(bufs, batch).fill(0.0);
                    } else {
                        dec.feed_back(bufs, batch);
                    }
                    self.dec.decode_step(&dec, bufs, batch, t, Some(src));
                    dec.store_prediction(bufs, batch, out, (tgt, t));
                }
            }
            None => {
                // Each pass t re-runs the decoder over t positions: 0.0, then the predictions of
                // the passes before, each pass's own (its last position), as the cached path and
                // PyTorch's greedy loop feed them back — not the earlier positions' outputs
                // recomputed by the last pass, which differ where a MoE's capacity depends on the
                // tokens in the call. The input slot keeps them: growing it from t − 1 to t
                // positions per sequence moves every row to a higher index, so it is done in
                // place from the end.
                for t in 1..=tgt {
                    let [y, x] = bufs
                        .acts
                        .get_disjoint_mut([
                            out.prefix(batch * (t - 1) * od),
                            self.dec_in.prefix(batch * t * od),
                        ])
                        .expect("planned slots are disjoint");
                    for b in (0..batch).rev() {
                        if t > 1 {
                            // Predictions 1..t − 2 from the previous input; t − 1 from the last pass.
                            x.copy_within(b * (t - 1) * od + od..(b + 1) * (t - 1) * od, b * t * od + od);
                            x[b * t * od..][(t - 1) * od..t * od]
                                .copy_from_slice(&y[(b * (t - 1) + t - 2) * od..][..od]);
                        }
                        x[b * t * od..][..od].fill(0.0);
                    }
                    self.dec.forward(bufs, self.dec_in, (batch, t), Some(&mem));
                }
                // The result is the predictions the passes made: 1..tgt − 1 from the last input,
                // tgt from the last pass.
                let [y, x] = bufs
                    .acts
                    .get_disjoint_mut([out.prefix(batch * tgt * od), self.dec_in.prefix(batch * tgt * od)])
                    .expect("planned slots are disjoint");
                for b in 0..batch {
                    y[b * tgt * od..][..(tgt - 1) * od]
                        .copy_from_slice(&x[b * tgt * od + od..(b + 1) * tgt * od]);
                }
            }
        }
    }
}
