//! Firmware (d): the trained MLP of `mlp_train`, weights in flash, predicting a few rows; see
//! `regkern_scenarios::mlp_infer`. By default through `Model`/`Net` with the weights copied from
//! an array; feature `safetensors` loads the checkpoint instead; feature `layers` runs core's
//! layers directly with the weights read in place (to measure what an MLP-only build costs).
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use regkern_fw_rt::Firmware;
use regkern_scenarios::{finish, mlp_infer};

#[cfg(not(feature = "layers"))]
const ARENA_FLOATS: usize = mlp_infer::ARENA_FLOATS;
#[cfg(feature = "layers")]
const ARENA_FLOATS: usize = mlp_infer::LAYERS_ARENA_FLOATS;

#[entry]
fn main() -> ! {
    // cortex-m-rt hands `static mut`s declared here to `main` as `&'static mut`.
    static mut ARENA: [f32; ARENA_FLOATS] = [0.0; ARENA_FLOATS];
    let mut fw = Firmware::new();
    #[cfg(not(any(feature = "safetensors", feature = "layers")))]
    let result = mlp_infer::run_net(&mut fw, ARENA);
    #[cfg(feature = "safetensors")]
    let result = mlp_infer::run_safetensors(&mut fw, ARENA);
    #[cfg(all(feature = "layers", not(feature = "safetensors")))]
    let result = mlp_infer::run_layers(&mut fw, ARENA);
    let ok = finish(&mut fw, result);
    fw.exit(ok)
}
