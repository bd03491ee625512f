//! Put the workspace's memory.x (mps2-an386) on the linker's search path, where cortex-m-rt's
//! link.x includes it from.
use std::path::PathBuf;

fn main() {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let workspace = dir.parent().expect("rt/ lies in the firmware workspace");
    println!("cargo:rustc-link-search={}", workspace.display());
    println!("cargo:rerun-if-changed={}", workspace.join("memory.x").display());
}
