//! Memory a command may take, checked before anything is allocated.
//!
//! Every buffer whose size a user chooses (the arena, the dataset's sample order, prediction and
//! generation outputs) is allocated here: its size is computed with checked arithmetic, compared
//! with the limit (`--max_memory`, by default the machine's memory) and reserved fallibly, so a
//! config too big for the machine is an error naming the buffer, never an abort in `alloc`.

use std::sync::OnceLock;

static LIMIT: OnceLock<u64> = OnceLock::new();

/// Set the limit for this process (once, from `--max_memory`); `None` keeps the default.
pub fn set_limit(limit: Option<u64>) {
    let _ = LIMIT.set(limit.unwrap_or_else(machine_memory));
}

/// Bytes a command may allocate: `--max_memory`, or what the machine has.
pub fn limit() -> u64 {
    *LIMIT.get_or_init(machine_memory)
}

/// The machine's memory: `MemTotal` of `/proc/meminfo`, or the cgroup's `memory.max` when that
/// is smaller; unlimited where neither can be read.
fn machine_memory() -> u64 {
    let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        let line = s.lines().find(|l| l.starts_with("MemTotal:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        kib.checked_mul(1024)
    });
    let cgroup =
        std::fs::read_to_string("/sys/fs/cgroup/memory.max").ok().and_then(|s| s.trim().parse().ok());
    match (total, cgroup) {
        (Some(t), Some(c)) => t.min(c),
        (Some(t), None) => t,
        (None, Some(c)) => c,
        (None, None) => u64::MAX,
    }
}

/// `--max_memory`'s value: bytes, or a number with a binary suffix (`512M`, `8G`, `1.5GiB`).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let scale: u64 = match unit.trim().to_ascii_uppercase().trim_end_matches("IB").trim_end_matches('B') {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return Err(format!("{s:?} is not a size (bytes, or a number with K, M, G or T)")),
    };
    let v: f64 =
        num.parse().map_err(|_| format!("{s:?} is not a size (bytes, or a number with K, M, G or T)"))?;
    let bytes = v * scale as f64;
    if !(bytes.is_finite() && bytes >= 1.0 && bytes < u64::MAX as f64) {
        return Err(format!("{s:?} is not a size between 1 byte and 16 EiB"));
    }
    Ok(bytes as u64)
}

/// Human-readable bytes for messages (`47.0 GB`).
pub fn human(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e15 {
        format!("{:.1} PB", b / 1e15)
    } else if b >= 1e12 {
        format!("{:.1} TB", b / 1e12)
    } else if b >= 1e9 {
        format!("{:.1} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1} kB", b / 1e3)
    } else {
        format!("{bytes} B")
    }
}

/// Refuse `bytes` (what `what` needs in all) if it exceeds the limit.
pub fn check(bytes: u64, what: &str) -> Result<(), String> {
    let limit = limit();
    if bytes > limit {
        return Err(format!(
            "{what} needs {}, more than --max_memory {} allows; use smaller sizes or raise --max_memory",
            human(bytes),
            human(limit)
        ));
    }
    Ok(())
}

/// Bytes of `n` values of `T`, or an error naming `what` if that overflows.
pub fn bytes_of<T>(n: usize, what: &str) -> Result<u64, String> {
    n.checked_mul(size_of::<T>())
        .map(|b| b as u64)
        .ok_or_else(|| format!("{what} would hold {n} values: more than this machine can address"))
}

/// `n` default values of `T`, allocated fallibly after checking the limit.
pub fn zeroed<T: Clone + Default>(n: usize, what: &str) -> Result<Vec<T>, String> {
    check(bytes_of::<T>(n, what)?, what)?;
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| {
        format!("cannot allocate {} for {what}: the system refused", human(n as u64 * size_of::<T>() as u64))
    })?;
    v.resize(n, T::default());
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("512M").unwrap(), 512 << 20);
        assert_eq!(parse_size("8g").unwrap(), 8 << 30);
        assert_eq!(parse_size("1.5GiB").unwrap(), 3 << 29);
        assert_eq!(parse_size("2 KB").unwrap(), 2048);
        for bad in ["", "x", "1Q", "-5", "0", "1e400", "99999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn oversized_buffers_are_errors_naming_them() {
        let e = zeroed::<f32>(usize::MAX, "the arena").unwrap_err();
        assert!(e.contains("the arena"), "{e}");
        let e = zeroed::<f32>(usize::MAX / 8, "the sample order").unwrap_err();
        assert!(e.contains("the sample order") && e.contains("--max_memory"), "{e}");
        assert_eq!(zeroed::<f32>(3, "x").unwrap(), vec![0.0; 3]);
    }
}
