//! Firmware (b) tiny GQA transformer trained with Adam on seqsum over 8 positions: see `regkern_scenarios::seqsum_train`.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use regkern_fw_rt::Firmware;
use regkern_scenarios::{finish, seqsum_train};

#[entry]
fn main() -> ! {
    // cortex-m-rt hands `static mut`s declared here to `main` as `&'static mut`: the arena is a
    // zeroed static in .bss, and nothing else holds memory.
    static mut ARENA: [f32; seqsum_train::ARENA_FLOATS] = [0.0; seqsum_train::ARENA_FLOATS];
    let mut fw = Firmware::new();
    let result = seqsum_train::run(&mut fw, ARENA);
    let ok = finish(&mut fw, result);
    fw.exit(ok)
}
