//! Data: the seeded synthetic tasks of SPEC §5, user data in slices, and a batching loader.
//!
//! A [`Synthetic`] task stores no samples: sample `i` is drawn from its own random stream
//! (run seed, sample index), so a dataset of any size costs a few bytes and any sample can be
//! produced in any order. Train and validation splits are disjoint index ranges of one task.
//!
//! | task | definition |
//! |---|---|
//! | `linear`  | x ~ U(−1,1)⁸, y = x·w* + b* + N(0, 0.1²), w*, b* ~ N(0,1) |
//! | `nlinear` | x ~ U(−1,1)⁸, y = sin(3·x·a) + 0.5·(x·b)² + N(0, 0.05²), a, b ~ N(0,1)/√8 |
//! | `seqsum`  | x ~ U(−1,1)^[32, 1], y = Σx / √32 (a sequence of 32 tokens, one feature each) |
//! | `sine`    | x_t = A·sin(ωt + φ) + N(0, 0.01²), t = 0..33, A ~ U(0.5, 1.5), ω ~ U(0.1, 0.5), φ ~ U(0, 2π); input x[0..32], target x[1..33] |
//! | `reverse` | x ~ U(−1,1)^[32, 1], target = x reversed (sequence to sequence) |

use crate::error::{Error, Result, check_len, ensure};
use crate::rng::Xoshiro256;

/// A source of (input, target) samples of fixed widths.
pub trait Dataset {
    /// Number of samples.
    fn len(&self) -> usize;

    /// True when there are no samples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Floats per input sample.
    fn in_len(&self) -> usize;

    /// Floats per target sample.
    fn out_len(&self) -> usize;

    /// Write sample `i` (< `len()`) into `x` (`in_len` floats) and `y` (`out_len` floats).
    fn get(&self, i: usize, x: &mut [f32], y: &mut [f32]);

    /// Write the samples `indices` consecutively into `x` and `y`.
    fn fill(&self, indices: &[u32], x: &mut [f32], y: &mut [f32]) {
        let (il, ol) = (self.in_len(), self.out_len());
        for ((&i, xs), ys) in indices.iter().zip(x.chunks_exact_mut(il)).zip(y.chunks_exact_mut(ol)) {
            self.get(i as usize, xs, ys);
        }
    }
}

/// The synthetic tasks (`--type` picks the task of its model).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    /// Noisy linear map of 8 features.
    Linear,
    /// Noisy non-linear map of 8 features.
    Nlinear,
    /// Scaled sum of a sequence of 32 values.
    Seqsum,
    /// Next value of a noisy sine wave (autoregressive), 32 steps.
    Sine,
    /// A sequence of 32 values, reversed (encoder-decoder).
    Reverse,
}

/// Input features of the `linear` and `nlinear` tasks.
pub const TASK_FEATURES: usize = 8;

/// Tokens per sequence of the `seqsum` task.
pub const SEQSUM_LEN: usize = 32;

/// Tokens per input sequence of the `sine` task (the wave has one more value: the last target).
pub const SINE_LEN: usize = 32;

/// Tokens per source and target sequence of the `reverse` task.
pub const REVERSE_LEN: usize = 32;

// Stream ids: task coefficients and per-sample draws never share a random stream.
const STREAM_COEFS: u64 = 1;
const STREAM_SAMPLES: u64 = 2;

impl Task {
    /// The task's name.
    pub const fn name(self) -> &'static str {
        match self {
            Task::Linear => "linear",
            Task::Nlinear => "nlinear",
            Task::Seqsum => "seqsum",
            Task::Sine => "sine",
            Task::Reverse => "reverse",
        }
    }

    /// True for the sequence tasks, whose length [`Synthetic::with_seq_len`] may change.
    pub const fn is_sequence(self) -> bool {
        matches!(self, Task::Seqsum | Task::Sine | Task::Reverse)
    }

    /// Tokens per sample by default (1 for the feature tasks).
    pub const fn seq_len(self) -> usize {
        match self {
            Task::Linear | Task::Nlinear => 1,
            Task::Seqsum => SEQSUM_LEN,
            Task::Sine => SINE_LEN,
            Task::Reverse => REVERSE_LEN,
        }
    }

    /// Features per token.
    pub const fn in_dim(self) -> usize {
        match self {
            Task::Linear | Task::Nlinear => TASK_FEATURES,
            Task::Seqsum | Task::Sine | Task::Reverse => 1,
        }
    }

    /// True for next-value prediction: one target per input token.
    pub const fn autoregressive(self) -> bool {
        matches!(self, Task::Sine)
    }

    /// True for sequence-to-sequence tasks (encoder-decoder models).
    pub const fn seq2seq(self) -> bool {
        matches!(self, Task::Reverse)
    }

    /// True when the target holds one value per token rather than one per sample.
    pub const fn per_token(self) -> bool {
        self.autoregressive() || self.seq2seq()
    }

    /// Floats per input sample at the default length.
    pub const fn in_len(self) -> usize {
        self.in_len_at(self.seq_len())
    }

    /// Floats per target sample at the default length.
    pub const fn out_len(self) -> usize {
        self.out_len_at(self.seq_len())
    }

    /// Floats per input sample of `seq_len` tokens.
    pub const fn in_len_at(self, seq_len: usize) -> usize {
        seq_len * self.in_dim()
    }

    /// Floats per target sample of `seq_len` tokens.
    pub const fn out_len_at(self, seq_len: usize) -> usize {
        if self.per_token() { seq_len } else { 1 }
    }
}

/// A seeded synthetic task over sample indices `start .. start + len`.
#[derive(Clone, Debug, PartialEq)]
pub struct Synthetic {
    task: Task,
    seed: u64,
    start: usize,
    len: usize,
    /// Tokens per sample (1 for the feature tasks).
    seq_len: usize,
    /// linear: w* (8) then b*; nlinear: a (8) then b (8).
    coef: [f32; 2 * TASK_FEATURES],
}

impl Synthetic {
    /// Samples `start .. start + len` of `task` drawn with `seed`.
    pub fn new(task: Task, seed: u64, start: usize, len: usize) -> Self {
        let mut rng = Xoshiro256::stream(seed, STREAM_COEFS, 0);
        let mut coef = [0.0f32; 2 * TASK_FEATURES];
        match task {
            Task::Linear => rng.fill_normal(&mut coef[..=TASK_FEATURES], 0.0, 1.0),
            Task::Nlinear => rng.fill_normal(&mut coef, 0.0, 1.0 / libm::sqrtf(TASK_FEATURES as f32)),
            Task::Seqsum | Task::Sine | Task::Reverse => {}
        }
        Synthetic { task, seed, start, len, seq_len: task.seq_len(), coef }
    }

    /// The same samples with sequences of `seq_len` tokens (sequence tasks; default 32): seqsum's
    /// target is then Σx/√seq_len, sine's wave has `seq_len + 1` values. `BadConfig` for 0, or
    /// for another length of a feature task.
    pub fn with_seq_len(mut self, seq_len: usize) -> Result<Self> {
        ensure(seq_len > 0, "seq_len", "must be at least 1")?;
        ensure(self.task.is_sequence() || seq_len == 1, "seq_len", "applies to sequence tasks only")?;
        self.seq_len = seq_len;
        Ok(self)
    }

    /// Tokens per sample.
    pub fn seq_len(&self) -> usize {
        self.seq_len
    }

    /// A train split (samples `0..n_train`) and a validation split (the next `n_val`).
    pub fn split(task: Task, seed: u64, n_train: usize, n_val: usize) -> (Self, Self) {
        (Self::new(task, seed, 0, n_train), Self::new(task, seed, n_train, n_val))
    }

    /// The task.
    pub fn task(&self) -> Task {
        self.task
    }
}

impl Dataset for Synthetic {
    fn len(&self) -> usize {
        self.len
    }

    fn in_len(&self) -> usize {
        self.task.in_len_at(self.seq_len)
    }

    fn out_len(&self) -> usize {
        self.task.out_len_at(self.seq_len)
    }

    fn get(&self, i: usize, x: &mut [f32], y: &mut [f32]) {
        debug_assert!(i < self.len);
        let mut rng = Xoshiro256::stream(self.seed, STREAM_SAMPLES, (self.start + i) as u64);
        let dot = |x: &[f32], w: &[f32]| x.iter().zip(w).map(|(a, b)| a * b).sum::<f32>();
        let (c0, c1) = self.coef.split_at(TASK_FEATURES);
        match self.task {
            Task::Linear => {
                rng.fill_uniform(x, -1.0, 1.0);
                y[0] = dot(x, c0) + c1[0] + 0.1 * rng.normal();
            }
            Task::Nlinear => {
                rng.fill_uniform(x, -1.0, 1.0);
                let (xa, xb) = (dot(x, c0), dot(x, c1));
                y[0] = libm::sinf(3.0 * xa) + 0.5 * xb * xb + 0.05 * rng.normal();
            }
            Task::Seqsum => {
                rng.fill_uniform(x, -1.0, 1.0);
                y[0] = x.iter().sum::<f32>() / libm::sqrtf(self.seq_len as f32);
            }
            Task::Sine => {
                let (amp, omega) = (rng.uniform_in(0.5, 1.5), rng.uniform_in(0.1, 0.5));
                let phase = rng.uniform_in(0.0, core::f32::consts::TAU);
                // Wave values 0..=T: x takes 0..T, y takes 1..=T (the next value of each).
                let mut wave = |t: usize| amp * libm::sinf(omega * t as f32 + phase) + 0.01 * rng.normal();
                let mut prev = wave(0);
                for t in 0..self.seq_len {
                    x[t] = prev;
                    prev = wave(t + 1);
                    y[t] = prev;
                }
            }
            Task::Reverse => {
                rng.fill_uniform(x, -1.0, 1.0);
                for (yt, xt) in y.iter_mut().zip(x.iter().rev()) {
                    *yt = *xt;
                }
            }
        }
    }
}

/// User data held in the caller's slices: `x` is `len × in_len`, `y` is `len × out_len`.
#[derive(Clone, Copy, Debug)]
pub struct SliceDataset<'d> {
    x: &'d [f32],
    y: &'d [f32],
    in_len: usize,
    out_len: usize,
}

impl<'d> SliceDataset<'d> {
    /// Wrap `x` and `y`; their lengths must describe the same number of samples.
    pub fn new(x: &'d [f32], y: &'d [f32], in_len: usize, out_len: usize) -> Result<Self> {
        ensure(in_len > 0 && out_len > 0, "sample width", "must be at least 1")?;
        let n = x.len() / in_len;
        check_len("x", x.len(), n * in_len)?;
        check_len("y", y.len(), n * out_len)?;
        Ok(SliceDataset { x, y, in_len, out_len })
    }

    /// The first `n` samples and the rest (e.g. train and validation).
    pub fn split_at(&self, n: usize) -> Result<(Self, Self)> {
        if n > self.len() {
            return Err(Error::EmptyDataset);
        }
        let (x0, x1) = self.x.split_at(n * self.in_len);
        let (y0, y1) = self.y.split_at(n * self.out_len);
        Ok((SliceDataset { x: x0, y: y0, ..*self }, SliceDataset { x: x1, y: y1, ..*self }))
    }
}

impl Dataset for SliceDataset<'_> {
    fn len(&self) -> usize {
        self.x.len() / self.in_len
    }

    fn in_len(&self) -> usize {
        self.in_len
    }

    fn out_len(&self) -> usize {
        self.out_len
    }

    fn get(&self, i: usize, x: &mut [f32], y: &mut [f32]) {
        x.copy_from_slice(&self.x[i * self.in_len..][..self.in_len]);
        y.copy_from_slice(&self.y[i * self.out_len..][..self.out_len]);
    }
}

/// Batches sample indices, reshuffling each epoch with a seeded Fisher–Yates shuffle.
///
/// The caller provides the index table (`len` u32s), so the loader allocates nothing.
/// Epoch `e`'s order depends only on (seed, e): runs are reproducible and resumable.
#[derive(Debug)]
pub struct DataLoader<'o> {
    order: &'o mut [u32],
    batch: usize,
    shuffle: bool,
    seed: u64,
    epoch: u64,
    pos: usize,
}

impl<'o> DataLoader<'o> {
    /// A loader over `order.len()` samples in batches of `batch`.
    pub fn new(order: &'o mut [u32], batch: usize, shuffle: bool, seed: u64) -> Result<Self> {
        if order.is_empty() {
            return Err(Error::EmptyDataset);
        }
        ensure(batch > 0, "batch_size", "must be at least 1")?;
        ensure(u32::try_from(order.len()).is_ok(), "dataset", "has more than 2^32 samples")?;
        let mut loader = DataLoader { order, batch, shuffle, seed, epoch: 0, pos: 0 };
        loader.start_epoch(0);
        Ok(loader)
    }

    /// Samples per epoch.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// True when the loader has no samples (never: `new` rejects that).
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Batches per epoch (the last may be smaller).
    pub fn batches_per_epoch(&self) -> usize {
        self.order.len().div_ceil(self.batch)
    }

    /// Rewind to the start of epoch `epoch`, in that epoch's order.
    pub fn start_epoch(&mut self, epoch: u64) {
        self.epoch = epoch;
        self.pos = 0;
        for (i, v) in self.order.iter_mut().enumerate() {
            *v = i as u32; // new() checked that len fits in u32
        }
        if self.shuffle {
            let mut rng = Xoshiro256::stream(self.seed, 3, epoch);
            for i in (1..self.order.len()).rev() {
                let j = rng.below(i as u32 + 1) as usize;
                self.order.swap(i, j);
            }
        }
    }

    /// The sample indices of the next batch of this epoch, or `None` at its end.
    pub fn next_batch(&mut self) -> Option<&[u32]> {
        if self.pos >= self.order.len() {
            return None;
        }
        let end = (self.pos + self.batch).min(self.order.len());
        let idx = &self.order[self.pos..end];
        self.pos = end;
        Some(idx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_samples_are_reproducible_and_split_disjointly() {
        let (train, val) = Synthetic::split(Task::Nlinear, 9, 100, 20);
        let (mut x1, mut y1, mut x2, mut y2) = ([0.0f32; 8], [0.0f32; 1], [0.0f32; 8], [0.0f32; 1]);
        train.get(5, &mut x1, &mut y1);
        Synthetic::new(Task::Nlinear, 9, 0, 100).get(5, &mut x2, &mut y2);
        assert_eq!((x1, y1), (x2, y2));
        val.get(0, &mut x2, &mut y2);
        train.get(0, &mut x1, &mut y1);
        assert_ne!(x1, x2);
        assert!(x1.iter().all(|v| (-1.0..1.0).contains(v)));
    }

    #[test]
    fn linear_task_has_its_noise_floor() {
        // The residual of the true map is the noise: variance 0.1² = 0.01.
        let ds = Synthetic::new(Task::Linear, 1, 0, 20_000);
        let (w, b) = (&ds.coef[..8], ds.coef[8]);
        let (mut x, mut y, mut se) = ([0.0f32; 8], [0.0f32; 1], 0.0f64);
        for i in 0..ds.len() {
            ds.get(i, &mut x, &mut y);
            let pred: f32 = x.iter().zip(w).map(|(a, b)| a * b).sum::<f32>() + b;
            se += f64::from(y[0] - pred).powi(2);
        }
        let mse = se / ds.len() as f64;
        assert!((mse - 0.01).abs() < 0.0005, "noise variance {mse}");
    }

    #[test]
    fn seqsum_is_the_scaled_sum() {
        let ds = Synthetic::new(Task::Seqsum, 4, 0, 10);
        assert_eq!((ds.in_len(), ds.out_len()), (32, 1));
        let (mut x, mut y) = ([0.0f32; 32], [0.0f32; 1]);
        ds.get(3, &mut x, &mut y);
        assert!((y[0] - x.iter().sum::<f32>() / 32f32.sqrt()).abs() < 1e-6);
        assert!(x.iter().all(|v| (-1.0..1.0).contains(v)));
    }

    #[test]
    fn sequence_tasks_take_their_length_as_a_parameter() {
        let ds = Synthetic::new(Task::Seqsum, 4, 0, 10).with_seq_len(8).unwrap();
        assert_eq!((ds.in_len(), ds.out_len(), ds.seq_len()), (8, 1, 8));
        let (mut x, mut y) = ([0.0f32; 8], [0.0f32; 1]);
        ds.get(3, &mut x, &mut y);
        assert!((y[0] - x.iter().sum::<f32>() / 8f32.sqrt()).abs() < 1e-6);
        let ds = Synthetic::new(Task::Sine, 2, 0, 10).with_seq_len(5).unwrap();
        assert_eq!((ds.in_len(), ds.out_len()), (5, 5));
        let (mut x, mut y) = ([0.0f32; 5], [0.0f32; 5]);
        ds.get(7, &mut x, &mut y);
        assert_eq!(&x[1..], &y[..4], "target t is input t + 1");
        let long = Synthetic::new(Task::Sine, 2, 0, 10);
        let (mut xl, mut yl) = ([0.0f32; 32], [0.0f32; 32]);
        long.get(7, &mut xl, &mut yl);
        assert_eq!(&xl[..5], &x, "a shorter wave is a prefix of the default one");
        assert_eq!(
            Synthetic::new(Task::Nlinear, 0, 0, 1).with_seq_len(2).unwrap_err(),
            Error::BadConfig { field: "seq_len", reason: "applies to sequence tasks only" }
        );
        assert!(Synthetic::new(Task::Reverse, 0, 0, 1).with_seq_len(0).is_err());
    }

    #[test]
    fn sine_targets_are_the_next_inputs() {
        let ds = Synthetic::new(Task::Sine, 2, 0, 10);
        assert_eq!((ds.in_len(), ds.out_len()), (32, 32));
        let (mut x, mut y) = ([0.0f32; 32], [0.0f32; 32]);
        ds.get(7, &mut x, &mut y);
        assert_eq!(&x[1..], &y[..31], "target t is input t + 1");
        assert!(x.iter().chain(&y).all(|v| v.abs() < 1.6), "amplitude ≤ 1.5 plus noise");
    }

    #[test]
    fn reverse_targets_are_the_inputs_backwards() {
        let ds = Synthetic::new(Task::Reverse, 3, 0, 10);
        assert_eq!((ds.in_len(), ds.out_len()), (32, 32));
        let (mut x, mut y) = ([0.0f32; 32], [0.0f32; 32]);
        ds.get(5, &mut x, &mut y);
        assert!((0..32).all(|t| y[t] == x[31 - t]));
        assert!(x.iter().all(|v| (-1.0..1.0).contains(v)));
        assert_ne!(x[0], x[31]);
    }

    #[test]
    fn loader_visits_every_sample_once_per_epoch_and_reshuffles() {
        let mut order = [0u32; 10];
        let mut loader = DataLoader::new(&mut order, 4, true, 7).unwrap();
        assert_eq!(loader.batches_per_epoch(), 3);
        let mut seen = [0u8; 10];
        let mut first = [0u32; 4];
        let mut sizes = [0usize; 3];
        for (b, size) in sizes.iter_mut().enumerate() {
            let idx = loader.next_batch().unwrap();
            if b == 0 {
                first.copy_from_slice(idx);
            }
            *size = idx.len();
            idx.iter().for_each(|&i| seen[i as usize] += 1);
        }
        assert_eq!(sizes, [4, 4, 2]);
        assert!(loader.next_batch().is_none());
        assert_eq!(seen, [1; 10]);
        loader.start_epoch(1);
        let second = loader.next_batch().unwrap();
        assert_ne!(second, &first[..], "epoch 1 reuses epoch 0's order");
    }

    #[test]
    fn slice_dataset_checks_widths() {
        let x = [1.0f32, 2.0, 3.0, 4.0];
        assert!(SliceDataset::new(&x, &[1.0, 2.0], 2, 1).is_ok());
        assert_eq!(
            SliceDataset::new(&x, &[1.0], 2, 1).unwrap_err(),
            Error::BadLen { what: "y", expected: 2, got: 1 }
        );
        assert!(SliceDataset::new(&x[..3], &[1.0], 2, 1).is_err());
    }
}
