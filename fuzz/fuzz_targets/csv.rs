//! The CLI's CSV reader (`train --data`, `predict --input`; host-cli/src/data.rs, included as
//! is) on arbitrary text, with every header rule and layout: each file is read or refused with
//! a message; a refused cell is quoted at most `CLIP` characters long.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../host-cli/src/data.rs"]
mod data;

use data::{HeaderRow, Layout};

fuzz_target!(|bytes: &[u8]| {
    let Some((&sel, rest)) = bytes.split_first() else { return };
    let Some((&dim, rest)) = rest.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let header = [HeaderRow::Auto, HeaderRow::Yes, HeaderRow::No][usize::from(sel % 3)];
    // Small widths as users give them, plus 0 and huge ones (`--target_len 2^63`).
    let d = match dim >> 6 {
        0 => usize::from(dim & 7),
        1 => usize::from(dim & 63),
        2 => usize::MAX >> (dim & 63),
        _ => 1usize << (dim & 63),
    };
    let layout = match (sel / 3) % 6 {
        0 => Layout::PerSample { sequence: false, in_dim: 1, out_dim: d },
        1 => Layout::PerSample { sequence: true, in_dim: d, out_dim: 1 },
        2 => Layout::Autoregressive { dim: d },
        3 => Layout::Seq2Seq { in_dim: d, out_dim: 1, target_len: None },
        4 => Layout::Seq2Seq { in_dim: 1, out_dim: 1, target_len: Some(d) },
        _ => Layout::Seq2Seq { in_dim: 2, out_dim: d, target_len: Some(3) },
    };
    match data::parse_rows_with(text, header) {
        Ok(rows) => {
            assert!(rows.width > 0 && rows.values.len() % rows.width == 0, "ragged rows accepted");
            assert!(rows.values.iter().all(|v| v.is_finite()), "a non-finite value accepted");
            let val = f32::from(sel >> 4) / 16.0;
            let _ = data::training_from_rows(rows, "fuzz.csv", layout, val);
        }
        Err(message) => assert!(message.chars().count() < 400, "an error of {} chars", message.len()),
    }
    let _ = data::clip(text);
});
