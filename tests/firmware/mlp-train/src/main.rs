//! Firmware (a) MLP 8 → 16 → 8 → 1 trained with Adam on nlinear: see `regkern_scenarios::mlp_train`.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use regkern_fw_rt::Firmware;
use regkern_scenarios::{finish, mlp_train};

#[entry]
fn main() -> ! {
    // cortex-m-rt hands `static mut`s declared here to `main` as `&'static mut`: the arena is a
    // zeroed static in .bss, and nothing else holds memory.
    static mut ARENA: [f32; mlp_train::ARENA_FLOATS] = [0.0; mlp_train::ARENA_FLOATS];
    let mut fw = Firmware::new();
    let result = mlp_train::run(&mut fw, ARENA).map(|_| ());
    let ok = finish(&mut fw, result);
    fw.exit(ok)
}
