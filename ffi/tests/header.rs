//! `include/regkern.h` is what cbindgen generates from the crate: regenerate it and compare.
//! `REGKERN_BLESS=1 cargo test -p regkern-ffi --test header` rewrites it.

use std::path::PathBuf;

#[test]
fn the_committed_header_is_fresh() {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml parses");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut generated);
    let path = crate_dir.join("../include/regkern.h");
    if std::env::var_os("REGKERN_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/regkern.h is stale: regenerate it with REGKERN_BLESS=1 cargo test -p regkern-ffi --test header"
    );
}

#[test]
fn version_macros_match_the_crate_version() {
    let v = |s: &str| s.parse::<u32>().unwrap();
    assert_eq!(regkern::RK_VERSION_MAJOR, v(env!("CARGO_PKG_VERSION_MAJOR")));
    assert_eq!(regkern::RK_VERSION_MINOR, v(env!("CARGO_PKG_VERSION_MINOR")));
    assert_eq!(regkern::RK_VERSION_PATCH, v(env!("CARGO_PKG_VERSION_PATCH")));
}

#[test]
fn status_strings_match_core() {
    for code in -20..=1 {
        let s = unsafe { std::ffi::CStr::from_ptr(regkern::rk_status_str(code)) };
        assert_eq!(s.to_str().unwrap(), regkern_core::Error::describe(code), "code {code}");
    }
}
