//! Layers: one file per op, its forward and backward side by side, with their tests.
//!
//! Every `forward` overwrites its outputs; every `backward` accumulates (`+=`) into the
//! gradients it is given, so residual joins and gradient accumulation need no special case.

pub mod activation;
pub mod linear;
pub mod mse;

pub use activation::Activation;
pub use linear::Linear;
