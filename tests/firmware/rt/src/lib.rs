//! What every regkern firmware image shares, and nothing else.
//!
//! - [`Firmware`]: the scenarios' [`Platform`] on a Cortex-M4 under QEMU — lines to the host's
//!   stdout through semihosting, training steps timed with SysTick.
//! - [`Firmware::exit`]: print the measurements (`#` lines), then end QEMU through semihosting
//!   with status 0 (success) or 1.
//! - The one panic handler of the image: print `panic`, exit with status 1.
//! - Stack high-water mark: cortex-m-rt's `paint-stack` fills the stack region (`_stack_end` ..
//!   `_stack_start`) with `0xcccccccc` at reset, before `.data`/`.bss` are initialised and
//!   before `main`; [`stack_high_water`] scans up from the bottom for the first scrubbed word.
//!
//! **Instructions.** Run QEMU with `-icount shift=0`: the virtual clock then advances 1 ns per
//! instruction, and SysTick (core clock, 25 MHz on mps2) ticks once per 40 instructions. The
//! ratio is not assumed: [`Firmware::new`] calibrates it on a loop of known length (2 instructions
//! per iteration) and prints it; steps are reported in instructions through that ratio. Without
//! `-icount` the counts follow the host's wall clock and mean nothing.
#![no_std]

use core::arch::asm;

use cortex_m::peripheral::SYST;
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_semihosting::{debug, hio};
use regkern_scenarios::{Line, Platform};

/// SysTick is a 24-bit down-counter.
const SYST_MASK: u32 = 0x00ff_ffff;

/// Iterations of the calibration loop (2 instructions each).
const CALIBRATION_ITERS: u32 = 1_000_000;

/// The paint cortex-m-rt's `paint-stack` leaves on the untouched stack.
const PAINT: u32 = 0xcccc_cccc;

/// Semihosting output and SysTick step timing.
pub struct Firmware {
    out: Option<hio::HostStream>,
    /// SysTick value at the last `step_start`, when a step is open.
    step_from: Option<u32>,
    step_ticks: u64,
    steps: u32,
    /// Ticks the calibration loop took.
    calibration_ticks: u32,
}

impl Firmware {
    /// Open the host's stdout, start SysTick from the core clock and calibrate it.
    pub fn new() -> Self {
        let mut syst = cortex_m::Peripherals::take().map(|p| p.SYST);
        if let Some(s) = syst.as_mut() {
            s.set_clock_source(SystClkSource::Core);
            s.set_reload(SYST_MASK);
            s.clear_current();
            s.enable_counter();
        }
        let start = SYST::get_current();
        spin(CALIBRATION_ITERS);
        let calibration_ticks = start.wrapping_sub(SYST::get_current()) & SYST_MASK;
        Firmware { out: hio::hstdout().ok(), step_from: None, step_ticks: 0, steps: 0, calibration_ticks }
    }

    /// Print the stack high-water mark and the instruction counts, the outcome line, then end
    /// the program with status 0 if `ok`, else 1.
    pub fn exit(mut self, ok: bool) -> ! {
        let (used, size) = stack_high_water();
        note("stack_high_water").dec(used as u64).word("of").dec(size as u64).emit(&mut self);
        let calibrated = 2 * u64::from(CALIBRATION_ITERS);
        let mut l = note("calibration");
        l.dec(calibrated).word("instructions").dec(self.calibration_ticks.into()).word("ticks");
        l.emit(&mut self);
        if self.steps > 0 && self.calibration_ticks > 0 {
            let per_step =
                self.step_ticks * calibrated / (u64::from(self.calibration_ticks) * u64::from(self.steps));
            let mut l = note("steps");
            l.dec(self.steps.into()).word("ticks").dec(self.step_ticks);
            l.word("instructions_per_step").dec(per_step).emit(&mut self);
        }
        exit(ok)
    }
}

impl Default for Firmware {
    fn default() -> Self {
        Self::new()
    }
}

impl Platform for Firmware {
    fn line(&mut self, text: &[u8]) {
        if let Some(out) = self.out.as_mut() {
            // A line the host cannot take is lost; the diff against the host's output shows it.
            let _ = out.write_all(text).and_then(|()| out.write_all(b"\n"));
        }
    }

    fn step_start(&mut self) {
        self.step_from = Some(SYST::get_current());
    }

    fn step_end(&mut self) {
        if let Some(from) = self.step_from.take() {
            self.step_ticks += u64::from(from.wrapping_sub(SYST::get_current()) & SYST_MASK);
            self.steps += 1;
        }
    }
}

/// A `#` line: a measurement, which the host does not print and CI's diff ignores.
fn note(key: &str) -> Line {
    let mut l = Line::new("#");
    l.word(key);
    l
}

/// End QEMU through semihosting: status 0 if `ok`, else 1.
pub fn exit(ok: bool) -> ! {
    debug::exit(if ok { debug::EXIT_SUCCESS } else { debug::EXIT_FAILURE });
    // Only reached without a semihosting host (a real board): stop here.
    loop {
        cortex_m::asm::bkpt();
    }
}

/// `n` iterations of a 2-instruction loop (`subs`, `bne`).
#[inline(never)]
fn spin(n: u32) {
    // SAFETY: the loop only decrements a register it owns; no memory, no stack.
    unsafe {
        asm!("1:", "subs {0}, #1", "bne 1b", inout(reg) n => _, options(nomem, nostack));
    }
}

/// Bytes of stack ever used (from the top of RAM down to the deepest word that lost its paint)
/// and the size of the stack region.
pub fn stack_high_water() -> (usize, usize) {
    unsafe extern "C" {
        static _stack_end: u32;
        static _stack_start: u32;
    }
    let (bottom, top) = (&raw const _stack_end as usize, &raw const _stack_start as usize);
    let mut at = bottom;
    // SAFETY: `_stack_end..._stack_start` is the stack region cortex-m-rt's linker script
    // defines: word-aligned, mapped RAM. Volatile reads, as the compiler cannot know the paint.
    while at < top && unsafe { core::ptr::read_volatile(at as *const u32) } == PAINT {
        at += 4;
    }
    (top - at, top - bottom)
}

/// The image's only panic handler: say so and fail. The message is not printed, so no
/// formatting code is linked.
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    if let Ok(mut out) = hio::hstdout() {
        let _ = out.write_all(b"panic\n");
    }
    exit(false)
}
