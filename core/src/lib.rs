//! # regkern-core
//!
//! Train and run small regression models — linear regression, MLPs and transformers (sequence
//! regression, autoregressive generation with a KV cache, encoder-decoders with cross-attention;
//! MHA, MQA or GQA attention; dense or Mixture-of-Experts FFNs) — on any target Rust reaches,
//! including microcontrollers: `#![no_std]`, no `alloc`, no heap after init, no panics on bad
//! input.
//!
//! ## The shape of it
//!
//! 1. **Plan.** [`Model::plan`] takes a [`ModelConfig`] and a [`Mode`] (inference, or training
//!    with an [`Optimizer`], and a maximum batch) and computes, from the config alone, the exact
//!    bytes of every memory region: parameters, gradients, optimizer state, activations,
//!    activation gradients, scratch. [`Report`] lists them; a firmware engineer can size a
//!    `static` buffer from it before flashing.
//! 2. **Carve.** [`Net::new`] splits the caller's `&mut [f32]` by that plan. A buffer one float
//!    short is `Err(ArenaTooSmall { needed, got })` in bytes. Nothing allocates afterwards.
//! 3. **Train or run.** [`Trainer`] does steps (loss → gradients → non-finite guard → clipping →
//!    update) on batches the caller puts in the net's buffers, or whole epochs over a
//!    [`Dataset`] with a seeded [`DataLoader`]; [`Net::predict`] runs inference.
//!
//! Parameters, gradients and optimizer state are each one flat slice with identical offsets; the
//! parameter table ([`Model::params`]) names every tensor as PyTorch's `state_dict` does, so the
//! weights drop into an equivalent `torch.nn.Module`.
//!
//! ## Example: train an MLP on the `nlinear` task, then predict
//!
//! ```
//! use regkern_core::{DataLoader, Mode, Model, ModelConfig, MlpConfig, Net, Optimizer, Synthetic, Task,
//!                    TrainConfig, Trainer, Activation, Schedule};
//!
//! let cfg = ModelConfig::Mlp(MlpConfig::new(8, &[32, 16], 1, Activation::Relu)?);
//! let optimizer = Optimizer::adam(3e-3);
//! let model = Model::plan(&cfg, Mode::Training { max_batch: 64, optimizer })?;
//! let floats = model.report().total_floats();
//!
//! // The caller owns the memory; on a microcontroller this would be a `static mut` array.
//! let mut arena = vec![0.0f32; floats];
//! let mut net = Net::new(model, &mut arena)?;
//! net.init_params(0);
//!
//! let (train, val) = Synthetic::split(Task::Nlinear, 0, 512, 128);
//! let mut order = [0u32; 512];
//! let mut loader = DataLoader::new(&mut order, 64, true, 0)?;
//! let config = TrainConfig { epochs: 30, schedule: Schedule::Constant, clip_grad_norm: None };
//! let mut trainer = Trainer::new(net, optimizer, config)?;
//! let summary = trainer.fit(&train, Some(&val), &mut loader, &mut ())?;
//! assert!(summary.final_val_loss.unwrap() < 0.2);
//!
//! let mut y = [0.0f32; 1];
//! trainer.net().predict(&[0.1; 8], &mut y)?;
//! # Ok::<(), regkern_core::Error>(())
//! ```
//!
//! ## Features
//! - Architectures, all on by default: `mlp` (linear regression and MLPs), `transformer`
//!   (sequence regression and autoregressive transformers), `moe` (Mixture-of-Experts FFNs),
//!   `encdec` (encoder-decoders), `kv-cache` (KV-cached generation). A firmware depends with
//!   `default-features = false, features = ["mlp"]` and links only the MLP's code: the enum
//!   variants of [`ModelConfig`] and the planned model exist only for the enabled architectures,
//!   and a config that needs a missing one is `BadConfig` naming the feature.
//! - `std`: implements nothing extra yet beyond linking `std`; kernels pick the CPU's best SIMD
//!   path at run time with or without it.
//! - `testing`: finite-difference helpers for other crates' tests.
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![deny(unsafe_code)]
#![deny(missing_docs)]
// A build with fewer architectures leaves helpers, arguments and catch-all arms that only the
// others use; the full build (the workspace's, under clippy -D warnings) keeps every lint.
#![cfg_attr(
    not(all(feature = "mlp", feature = "transformer", feature = "encdec")),
    allow(unused_variables, unused_imports, dead_code, unreachable_patterns, irrefutable_let_patterns)
)]

pub mod arena;
pub mod checkpoint;
pub mod data;
pub mod error;
pub mod layers;
pub mod models;
pub mod ops;
pub mod optim;
pub mod parallel;
pub mod rng;
pub mod schedule;
pub mod sizing;
pub mod train;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use arena::{Buffers, Region, Report, carve};
pub use data::{DataLoader, Dataset, SliceDataset, Synthetic, Task};
pub use error::{Error, Result};
pub use layers::Activation;
pub use layers::moe::{Capacity, MoeStats};
#[cfg(feature = "encdec")]
pub use models::EncoderDecoderConfig;
#[cfg(feature = "transformer")]
pub use models::transformer::MoeConfig;
#[cfg(feature = "transformer")]
pub use models::{AttentionType, TransformerConfig};
pub use models::{Init, Memory, Mode, Model, ModelConfig, Net, ParamInfo};
#[cfg(feature = "mlp")]
pub use models::{LinearConfig, MlpConfig};
pub use ops::Kernels;
pub use optim::Optimizer;
pub use rng::Xoshiro256;
pub use schedule::Schedule;
pub use train::{EpochInfo, Observer, StepInfo, Summary, TrainConfig, Trainer};
