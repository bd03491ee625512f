//! The parameter table: every tensor's PyTorch `state_dict` name, shape and initialisation.

use super::plan::BlockParams;
use super::{Role, Transformer};
use crate::arena::Slot;
use crate::models::{Init, ParamInfo, ParamName};

impl Transformer {
    /// Number of parameter tensors.
    pub(crate) fn param_count(&self) -> usize {
        let head = if self.role == Role::Encoder { 0 } else { 2 };
        3 + self.block_tensors() * self.cfg.num_layers + 2 + head
    }

    /// Floats of all parameter tensors (without the arena's alignment padding), in O(1): every
    /// block and expert has the same shapes. Planning checked larger (padded) products, so none
    /// of these overflow.
    pub(crate) fn param_floats(&self) -> usize {
        let c = &self.cfg;
        let (e, kv, f) = (c.embed_dim, c.attn().kv_dim(), c.ffn_dim);
        let pair = |rows: usize, cols: usize| rows * cols + rows;
        let attn = pair(e, 1) + 2 * pair(e, e) + 2 * pair(kv, e);
        let cross = if self.is_decoder() { attn } else { 0 };
        let ffn = pair(f, e) + pair(e, f);
        let ffn = c.moe.map_or(ffn, |m| m.num_experts * e + m.num_experts * ffn);
        let block = attn + cross + pair(e, 1) + ffn;
        let head = if self.role == Role::Encoder { 0 } else { pair(c.output_dim, e) };
        pair(e, c.input_dim) + c.max_seq_len * e + c.num_layers * block + 2 * e + head
    }

    /// Parameter tensors of one block: norms and attention (12; 22 with cross-attention), then
    /// the FFN's (4, or the router and 4 per expert).
    fn block_tensors(&self) -> usize {
        let attn = if self.is_decoder() { 22 } else { 12 };
        attn + self.cfg.moe.map_or(4, |m| 1 + 4 * m.num_experts)
    }

    fn is_decoder(&self) -> bool {
        matches!(self.role, Role::Decoder { .. })
    }

    /// Name prefix of this stack's tensors (`encoder.`, `decoder.`); the head is never prefixed.
    fn prefixed(&self, name: &mut ParamName) {
        match self.role {
            Role::Plain => {}
            Role::Encoder => {
                name.push("encoder");
            }
            Role::Decoder { .. } => {
                name.push("decoder");
            }
        }
    }

    /// The `i`-th parameter tensor, in PyTorch `state_dict` order.
    pub(crate) fn param(&self, i: usize) -> Option<ParamInfo> {
        let c = &self.cfg;
        let e = c.embed_dim;
        let uniform = |fan_in: usize| Init::Uniform(1.0 / libm::sqrtf(fan_in as f32));
        let mut name = ParamName::new();
        let (bt, layers) = (self.block_tensors(), c.num_layers);
        let n_blocks = bt * layers;
        if i < 3 {
            self.prefixed(&mut name);
            return Some(match i {
                0 => ParamInfo::matrix(
                    name.push("input_proj").field("weight").clone(),
                    self.input_proj[0],
                    e,
                    c.input_dim,
                    uniform(c.input_dim),
                ),
                1 => ParamInfo::vector(
                    name.push("input_proj").field("bias").clone(),
                    self.input_proj[1],
                    e,
                    uniform(c.input_dim),
                ),
                _ => ParamInfo::matrix(
                    name.push("pos_embed").field("weight").clone(),
                    self.pos_embed,
                    c.max_seq_len,
                    e,
                    Init::Normal(0.02),
                ),
            });
        }
        if i < 3 + n_blocks {
            let (layer, j) = ((i - 3) / bt, (i - 3) % bt);
            self.prefixed(&mut name);
            name.push("layers").index(layer);
            return Some(self.block_param(&self.block(layer).0, j, name));
        }
        let rest = i - 3 - n_blocks;
        match (rest, self.role) {
            (0 | 1, _) => {
                self.prefixed(&mut name);
                let field = ["weight", "bias"][rest];
                let init = Init::Const(if rest == 0 { 1.0 } else { 0.0 });
                Some(ParamInfo::vector(
                    name.push("final_norm").field(field).clone(),
                    self.final_norm[rest],
                    e,
                    init,
                ))
            }
            (2, Role::Plain | Role::Decoder { .. }) => Some(ParamInfo::matrix(
                name.push("head").field("weight").clone(),
                self.head[0],
                c.output_dim,
                e,
                uniform(e),
            )),
            (3, Role::Plain | Role::Decoder { .. }) => Some(ParamInfo::vector(
                name.push("head").field("bias").clone(),
                self.head[1],
                c.output_dim,
                uniform(e),
            )),
            _ => None,
        }
    }

    /// Tensor `j` of a block (in `state_dict` order) under `name` (`…layers.{i}`).
    ///
    /// Encoder and plain blocks: `norm1`, `attn.{q,k,v,o}_proj`, `norm2`, `ffn`. Decoder blocks:
    /// `norm1`, `self_attn.*`, `norm2` (before cross-attention), `cross_attn.*`, `norm3`, `ffn`.
    fn block_param(&self, bp: &BlockParams, j: usize, mut name: ParamName) -> ParamInfo {
        let c = &self.cfg;
        let (e, kv, f) = (c.embed_dim, c.attn().kv_dim(), c.ffn_dim);
        let uniform = |fan_in: usize| Init::Uniform(1.0 / libm::sqrtf(fan_in as f32));
        let proj_dims = [(e, e), (kv, e), (kv, e), (e, e)];
        let proj_names = ["q_proj", "k_proj", "v_proj", "o_proj"];
        // (path, [weight, bias] slots, rows, cols; cols 0 for a norm) of every pair before the FFN.
        let mut pairs: heapless::Vec<(&str, &str, [Slot; 2], usize, usize), 11> = heapless::Vec::new();
        let self_attn = if self.is_decoder() { "self_attn" } else { "attn" };
        let mut add =
            |group: &'static str, part: &'static str, slots: [Slot; 2], rows: usize, cols: usize| {
                // 11 pairs at most: two norms and four projections per attention, three norms.
                pairs.push((group, part, slots, rows, cols)).expect("at most 11 pairs before the FFN");
            };
        add("norm1", "", bp.norm1, e, 0);
        for (k, (rows, cols)) in proj_dims.iter().enumerate() {
            add(self_attn, proj_names[k], bp.proj[k], *rows, *cols);
        }
        if let Some(x) = bp.cross {
            add("norm2", "", x.norm, e, 0);
            for (k, (rows, cols)) in proj_dims.iter().enumerate() {
                add("cross_attn", proj_names[k], x.proj[k], *rows, *cols);
            }
            add("norm3", "", bp.norm2, e, 0);
        } else {
            add("norm2", "", bp.norm2, e, 0);
        }
        let field = ["weight", "bias"];
        if let Some(&(group, part, slots, rows, cols)) = pairs.get(j / 2) {
            name.push(group);
            if !part.is_empty() {
                name.push(part);
            }
            let (name, slot) = (name.field(field[j % 2]).clone(), slots[j % 2]);
            return match (cols, j % 2) {
                (0, 0) => ParamInfo::vector(name, slot, rows, Init::Const(1.0)),
                (0, _) => ParamInfo::vector(name, slot, rows, Init::Const(0.0)),
                (_, 0) => ParamInfo::matrix(name, slot, rows, cols, uniform(cols)),
                _ => ParamInfo::vector(name, slot, rows, uniform(cols)),
            };
        }
        // The FFN: dense fc1/fc2, or the router then each expert's fc1/fc2.
        let k = j - 2 * pairs.len();
        name.push("ffn");
        let (slot, fc) = match bp.moe {
            None => ([bp.fc1, bp.fc2][k / 2][k % 2], k),
            Some(m) if k == 0 => {
                let n_exp = c.moe.map_or(0, |x| x.num_experts);
                return ParamInfo::matrix(
                    name.push("router").field("weight").clone(),
                    m.router,
                    n_exp,
                    e,
                    uniform(e),
                );
            }
            Some(m) => {
                let (expert, part) = ((k - 1) / 4, (k - 1) % 4);
                name.push("experts").index(expert);
                (m.expert0[part].shifted(expert * m.stride), part)
            }
        };
        let name = name.push(["fc1", "fc1", "fc2", "fc2"][fc]).field(field[fc % 2]).clone();
        let (rows, cols) = if fc < 2 { (f, e) } else { (e, f) };
        if fc % 2 == 0 {
            ParamInfo::matrix(name, slot, rows, cols, uniform(cols))
        } else {
            ParamInfo::vector(name, slot, rows, uniform(cols))
        }
    }
}
