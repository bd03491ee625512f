//! Shared helpers of regkern's criterion benches (`benches/gemm.rs`, `benches/train_step.rs`).
//!
//! The benches measure the standard workloads of `shared/bench/WORKLOADS.md` (K1 sgemm, P1..P6
//! training steps), so that their figures compare directly with the PyTorch baseline in
//! `shared/bench/baseline.md`. This library holds what more than one bench, or a future one, needs:
//! operand generation, FLOP counts, the workload configs and a [`TrainSetup`] that owns the arena a
//! [`Trainer`] borrows. See `README.md` beside this crate for how to run and read them.
#![warn(missing_docs)]

use regkern_core::{
    Activation, Dataset, MlpConfig, Mode, Model, ModelConfig, Net, Optimizer, Result, Schedule, TrainConfig,
    Trainer, TransformerConfig, Xoshiro256,
};

/// Floating-point operations of one `m×n×k` gemm: a multiply and an add per term, `2·m·n·k`.
/// With `Throughput::Elements` set to this, criterion's elements/s are FLOP/s.
pub const fn gemm_flops(m: usize, n: usize, k: usize) -> u64 {
    2 * (m as u64) * (n as u64) * (k as u64)
}

/// `len` floats drawn uniformly from [−1, 1) with `seed`: reproducible gemm operands.
pub fn random_floats(len: usize, seed: u64) -> Vec<f32> {
    let mut v = vec![0.0f32; len];
    Xoshiro256::seed_from(seed).fill_uniform(&mut v, -1.0, 1.0);
    v
}

/// Samples `0..n` of `ds`, laid out as one batch: `x` is `n × in_len`, `y` is `n × out_len`.
pub fn first_batch(ds: &dyn Dataset, n: usize) -> (Vec<f32>, Vec<f32>) {
    assert!(n <= ds.len(), "dataset holds {} samples, {n} requested", ds.len());
    let mut x = vec![0.0f32; n * ds.in_len()];
    let mut y = vec![0.0f32; n * ds.out_len()];
    let indices: Vec<u32> = (0..n as u32).collect();
    ds.fill(&indices, &mut x, &mut y);
    (x, y)
}

/// A model planned for training, its optimizer, and an arena sized exactly by the plan.
///
/// A [`Trainer`] borrows its arena, so the arena must outlive it; this struct owns it, and
/// [`TrainSetup::trainer`] lends it out:
///
/// ```
/// # use regkern_benches::{TrainSetup, workloads};
/// let mut setup = TrainSetup::new(&workloads::p1_mlp(), workloads::P1_BATCH, workloads::optimizer())?;
/// let mut trainer = setup.trainer(0)?;
/// let (x, y) = (vec![0.5; 64 * 8], vec![1.0; 64]);
/// assert!(trainer.train_step(&x, &y)?.loss.is_finite());
/// # Ok::<(), regkern_core::Error>(())
/// ```
#[derive(Debug)]
pub struct TrainSetup {
    model: Model,
    optimizer: Optimizer,
    arena: Vec<f32>,
}

impl TrainSetup {
    /// Plan `cfg` for training batches of up to `max_batch` samples with `optimizer`, and allocate
    /// its arena (`model.report().total_floats()` floats).
    pub fn new(cfg: &ModelConfig, max_batch: usize, optimizer: Optimizer) -> Result<Self> {
        let model = Model::plan(cfg, Mode::Training { max_batch, optimizer })?;
        let arena = vec![0.0f32; model.report().total_floats()];
        Ok(TrainSetup { model, optimizer, arena })
    }

    /// The planned model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// A fresh trainer over this setup's arena: parameters initialised from `seed` (PyTorch's
    /// default init), optimizer state zeroed, constant learning rate, no gradient clipping.
    pub fn trainer(&mut self, seed: u64) -> Result<Trainer<'_>> {
        // `Net::new` zeroes the arena: gradients and optimizer state start as in a new run.
        let mut net = Net::new(self.model.clone(), &mut self.arena)?;
        net.init_params(seed);
        let config = TrainConfig { epochs: 1, schedule: Schedule::Constant, clip_grad_norm: None };
        Trainer::new(net, self.optimizer, config)
    }
}

/// The model configs and hyperparameters of the standard workloads (`WORKLOADS.md`).
pub mod workloads {
    use super::*;

    /// Samples per training step of P1.
    pub const P1_BATCH: usize = 64;

    /// The optimizer of every training workload: Adam, lr 1e-3, PyTorch's defaults otherwise.
    pub const fn optimizer() -> Optimizer {
        Optimizer::adam(1e-3)
    }

    /// P1 mlp-train: in 8, hidden 128, 64, 32, out 1, relu.
    pub fn p1_mlp() -> ModelConfig {
        ModelConfig::Mlp(MlpConfig {
            n_in: 8,
            latent_dims: [128, 64, 32].into_iter().collect(),
            n_out: 1,
            act: Activation::Relu,
        })
    }

    /// Sequences per training step of P2.
    pub const P2_BATCH: usize = 32;

    /// P2 tfm-reg-train: seq 32, input_dim 1, E 64, F 128, 2 layers, H 8, G 4 (GQA), regression.
    /// `max_seq_len` is the sequence length, so every row of `pos_embed` is used.
    pub fn p2_transformer() -> ModelConfig {
        // SPEC §3.3's defaults are P2's shape, but for the sequence length.
        ModelConfig::Transformer(TransformerConfig { max_seq_len: 32, ..TransformerConfig::default() })
    }

    /// P5 encdec-train: source 32, target 32, input_dim = output_dim = 1, E 64, F 128, 2 encoder +
    /// 2 decoder layers, H 8, G 4 (GQA); teacher-forced. `max_seq_len` is the sequence length.
    /// Batch [`P2_BATCH`].
    pub fn p5_encdec() -> ModelConfig {
        let ModelConfig::Transformer(t) = p2_transformer() else { unreachable!("P2 is a transformer") };
        ModelConfig::EncoderDecoder(regkern_core::EncoderDecoderConfig::from_stack(&t, 2, 2))
    }

    /// P3 tfm-moe-train: P2 with MoE FFNs: 8 experts, top-2, capacity 320 (= 1.25·B·T·k/E),
    /// alpha 0.01.
    pub fn p3_transformer() -> ModelConfig {
        let ModelConfig::Transformer(t) = p2_transformer() else { unreachable!("P2 is a transformer") };
        let moe = regkern_core::MoeConfig {
            num_experts: 8,
            top_k: 2,
            capacity: regkern_core::Capacity::Absolute(320),
            alpha: 0.01,
        };
        ModelConfig::Transformer(TransformerConfig { moe: Some(moe), ..t })
    }

    /// Sequences per training step of P6.
    pub const P6_BATCH: usize = 8;

    /// Tokens per sequence of P6.
    pub const P6_SEQ: usize = 128;

    /// P6 tfm-mid-train: seq 128, input_dim 1, E 256, F 1024, 4 layers, H 8, G 2 (GQA),
    /// regression (`max_seq_len` is the sequence length). Batch [`P6_BATCH`].
    pub fn p6_transformer() -> ModelConfig {
        ModelConfig::Transformer(TransformerConfig {
            embed_dim: 256,
            ffn_dim: 1024,
            num_layers: 4,
            num_heads: 8,
            num_groups: 2,
            max_seq_len: P6_SEQ,
            ..TransformerConfig::default()
        })
    }

    /// P4 tfm-ar-decode: autoregressive E 64, F 128, 2 layers, H 8, G 4, max_seq_len 128, with a
    /// KV cache of the given type.
    pub fn p4_transformer(kv_cache: Option<regkern_core::layers::KvDtype>) -> ModelConfig {
        ModelConfig::Transformer(TransformerConfig {
            autoregressive: true,
            kv_cache,
            ..TransformerConfig::default()
        })
    }

    /// Matmul FLOPs of one P2 training step (forward, input and weight gradients of every
    /// projection, attention's two batched products and their gradients): `baseline.md`'s 0.403
    /// GFLOP/step.
    pub const P2_MATMUL_FLOPS: u64 = 403_000_000;

    /// Matmul FLOPs of one P3 training step outside the experts: P2's projections and attention
    /// (P2 without its dense FFNs), the router's logits (2·E·experts per token) forward and
    /// backward, and the input and output layers. Counted at every gemm call of a step (a
    /// temporary counter): 208,023,552; the test below derives it from the shapes.
    pub const P3_SHARED_MATMUL_FLOPS: u64 = 208_023_552;

    /// Matmul FLOPs of one kept (token, expert) assignment of P3: its row through the expert's
    /// two products forward and four backward, 6·2·E·F.
    pub const P3_FLOPS_PER_KEPT: u64 = 6 * 2 * 64 * 128;

    /// (Token, expert) assignments of a P3 step: 2 layers × 32 · 32 tokens × top-2.
    pub const P3_ASSIGNMENTS: u64 = 2 * 32 * 32 * 2;

    /// Matmul FLOPs of a P3 step whose two MoE layers kept `kept` assignments between them (at
    /// most 2 · 1024 tokens · top-2). The experts run only their kept rows, so the work follows
    /// the routing: ~0.43 GFLOP at initialisation (~56% kept), 0.61 once nothing is dropped.
    /// (`baseline.md`'s 0.393 GFLOP corresponds to ~46% kept.)
    pub fn p3_matmul_flops(kept: f64) -> f64 {
        P3_SHARED_MATMUL_FLOPS as f64 + P3_FLOPS_PER_KEPT as f64 * kept
    }

    /// Matmul FLOPs of one P5 training step (`baseline.md`: 1.008 GFLOP).
    pub const P5_MATMUL_FLOPS: u64 = 1_008_000_000;

    /// Matmul FLOPs of one P6 training step (`baseline.md`: 18.52 GFLOP): per layer and token
    /// the Q, K, V and output projections (2·E·(2E + 2·G·E/H)), the FFN (4·E·F) and attention's
    /// two products over 128 positions (4·T·E), times 3 for forward and backward.
    pub const P6_MATMUL_FLOPS: u64 = 18_520_000_000;

    /// Matmul FLOPs of one P1 training step: per layer the forward `x·Wᵀ`, the weight gradient
    /// `dYᵀ·X` and, except for the first layer (whose input needs no gradient), the input gradient
    /// `dY·W`. Matches the "matmul GFLOP/step" column of `baseline.md` (0.0042).
    pub fn p1_matmul_flops() -> u64 {
        let widths = [8usize, 128, 64, 32, 1];
        let per_pass: u64 = widths.windows(2).map(|w| gemm_flops(P1_BATCH, w[1], w[0])).sum();
        3 * per_pass - gemm_flops(P1_BATCH, widths[0], widths[1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use regkern_core::{Synthetic, Task};

    #[test]
    fn flops_of_a_square_gemm() {
        assert_eq!(gemm_flops(256, 256, 256), 2 * 256 * 256 * 256);
        assert_eq!(gemm_flops(1024, 1024, 1024), 2_147_483_648);
    }

    #[test]
    fn random_floats_are_reproducible_and_in_range() {
        let a = random_floats(1000, 7);
        assert_eq!(a, random_floats(1000, 7));
        assert!(a.iter().all(|v| (-1.0..1.0).contains(v)));
        assert_ne!(a, random_floats(1000, 8));
    }

    /// P6's constant against its formula: the projections, FFN and attention of 4 layers over
    /// 8 × 128 tokens, forward and backward (3 passes), within the baseline's rounding.
    #[test]
    fn p6_flops_match_the_formula() {
        let (t, e, f, h, g, layers) = (8 * 128u64, 256u64, 1024u64, 8u64, 2u64, 4u64);
        let kv = g * e / h;
        let per_token = 2 * e * (2 * e + 2 * kv) + 4 * e * f + 4 * 128 * e;
        let total = 3 * layers * t * per_token;
        let rel = (total as f64 - workloads::P6_MATMUL_FLOPS as f64).abs() / total as f64;
        assert!(rel < 0.005, "{total}");
    }

    /// P3's shared part against its formula: per layer and token the Q, K, V and output
    /// projections, attention's two products over 32 positions and the router, times 3 for
    /// forward and backward, over 2 layers of 32 × 32 tokens; plus the input layer (1 → E, three
    /// products per token) and the output layer over 32 pooled rows (E → 1, three products).
    #[test]
    fn p3_shared_flops_match_the_formula() {
        let (t, e, h, g, experts, layers, seqs) = (32 * 32u64, 64u64, 8u64, 4u64, 8u64, 2u64, 32u64);
        let kv = g * e / h;
        let per_token = 2 * e * (2 * e + 2 * kv) + 4 * 32 * e + 2 * e * experts;
        let total = 3 * layers * t * per_token + 3 * 2 * t * e + 3 * 2 * seqs * e;
        assert_eq!(total, workloads::P3_SHARED_MATMUL_FLOPS);
        // P2 is the same step with dense FFNs (4·E·F per token and pass) and no router.
        let p2 = total - 3 * layers * t * 2 * e * experts + 3 * layers * t * 4 * e * 128;
        assert!((p2 as f64 / workloads::P2_MATMUL_FLOPS as f64 - 1.0).abs() < 0.0005, "{p2}");
        // Everything kept: each of the 2048 assignments of a layer is a dense FFN row.
        assert_eq!(workloads::P3_ASSIGNMENTS, layers * t * 2);
        let all_kept = workloads::p3_matmul_flops(workloads::P3_ASSIGNMENTS as f64);
        assert_eq!(all_kept as u64, total + 2 * 3 * layers * t * 4 * e * 128);
    }

    #[test]
    fn p1_matches_the_baseline_flop_count() {
        // baseline.md: 0.0042 GFLOP/step.
        let gflop = workloads::p1_matmul_flops() as f64 / 1e9;
        assert!((gflop - 0.0042).abs() < 0.00001, "{gflop}");
    }

    /// What the P1 bench runs, a few steps of it: the setup plans, and steps are finite.
    #[test]
    fn p1_setup_trains() {
        let ds = Synthetic::new(Task::Nlinear, 0, 0, workloads::P1_BATCH);
        let (x, y) = first_batch(&ds, workloads::P1_BATCH);
        assert_eq!((x.len(), y.len()), (64 * 8, 64));
        let mut setup = TrainSetup::new(&workloads::p1_mlp(), workloads::P1_BATCH, workloads::optimizer())
            .expect("P1 plans");
        let mut trainer = setup.trainer(0).expect("P1 trains");
        let first = trainer.train_step(&x, &y).expect("finite step").loss;
        let mut last = first;
        for _ in 0..20 {
            last = trainer.train_step(&x, &y).expect("finite step").loss;
        }
        assert!(last < first, "loss {first} -> {last}");
        // A second trainer from the same setup starts over.
        let mut again = setup.trainer(0).expect("P1 trains");
        assert_eq!(again.train_step(&x, &y).unwrap().loss, first);
    }
}
