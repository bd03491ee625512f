//! Layers: one file per op, its forward and backward side by side, with their tests.
//!
//! Every `forward` overwrites its outputs; every `backward` accumulates (`+=`) into the
//! gradients it is given, so residual joins and gradient accumulation need no special case.

pub mod activation;
pub mod attention;
pub mod ffn;
pub mod kv_cache;
pub mod layernorm;
pub mod linear;
pub mod moe;
pub mod mse;
pub mod pool;
pub mod position;

pub use activation::Activation;
pub use attention::Attn;
pub use ffn::Ffn;
pub use kv_cache::{KvCache, KvDtype};
pub use linear::Linear;
