//! Firmware (c) autoregressive tiny transformer on sine; generation with f32 and f16 KV caches and without: see `regkern_scenarios::sine_generate`.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use regkern_fw_rt::Firmware;
use regkern_scenarios::{finish, sine_generate};

#[entry]
fn main() -> ! {
    // cortex-m-rt hands `static mut`s declared here to `main` as `&'static mut`: the arena is a
    // zeroed static in .bss, and nothing else holds memory.
    static mut ARENA: [f32; sine_generate::ARENA_FLOATS] = [0.0; sine_generate::ARENA_FLOATS];
    let mut fw = Firmware::new();
    let result = sine_generate::run(&mut fw, ARENA);
    let ok = finish(&mut fw, result);
    fw.exit(ok)
}
