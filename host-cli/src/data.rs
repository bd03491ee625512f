//! Data for the CLI: a synthetic task (SPEC §5) or the user's CSV file (`train --data`,
//! `predict --input`), and the shape the model is built for.
//!
//! A CSV row is one sample, its values in order (a header row of names is skipped; blank lines
//! and lines starting with `#` are ignored). What a training row holds depends on the model:
//!
//! | model | training row | prediction row |
//! |---|---|---|
//! | linear, nlinear | features, then `--output_dim` targets | features |
//! | transformer regression | the sequence (`seq_len × input_dim` values, position-major), then `output_dim` targets | the sequence |
//! | `--autoregressive` | a series of `T + 1` positions (× `input_dim`): inputs are positions `0..T`, targets `1..=T` | the series (a prediction per position) |
//! | `--encoderdecoder` | the source (`S × input_dim`), then the target (`T × output_dim`); `T = S` unless `--target_len` | the source (decoded greedily) |

use std::path::Path;

use regkern_core::{Dataset, Synthetic, Task};

/// What the model sees: widths per token and sequence lengths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Features per token (per sample for linear and MLP models).
    pub in_dim: usize,
    /// Outputs per token (per sample for regression models).
    pub out_dim: usize,
    /// Tokens per input sequence (1 for linear and MLP models; the source for encoder-decoders).
    pub seq_len: usize,
    /// Target tokens per sample of an encoder-decoder (otherwise the outputs per sample / out_dim).
    pub target_len: usize,
}

impl Shape {
    /// The shape of a synthetic task with sequences of `seq_len` tokens (1 for feature tasks).
    pub fn of_task(task: Task, seq_len: usize) -> Shape {
        let out_dim = if task.per_token() { 1 } else { task.out_len() };
        let target_len = if task.per_token() { seq_len } else { 1 };
        Shape { in_dim: task.in_dim(), out_dim, seq_len, target_len }
    }

    /// Floats of one input sample.
    pub fn in_len(&self) -> usize {
        self.seq_len * self.in_dim
    }

    /// Floats of one target sample.
    pub fn out_len(&self) -> usize {
        self.target_len * self.out_dim
    }
}

/// How the model reads a sample, for splitting CSV rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// One output per sample (linear, MLP, transformer regression): inputs then `out_dim` targets;
    /// `in_dim` values per position for sequences (1 position for linear and MLP models, where
    /// `in_dim` is then the feature count and is taken from the row).
    PerSample { sequence: bool, in_dim: usize, out_dim: usize },
    /// Next-value prediction: a series; inputs are all but the last position, targets all but the first.
    Autoregressive { dim: usize },
    /// Source then target.
    Seq2Seq { in_dim: usize, out_dim: usize, target_len: Option<usize> },
}

/// Samples held in memory: `x` is `n × in_len`, `y` is `n × out_len`.
#[derive(Clone, Debug)]
pub struct Samples {
    x: Vec<f32>,
    y: Vec<f32>,
    in_len: usize,
    out_len: usize,
}

impl Dataset for Samples {
    fn len(&self) -> usize {
        self.x.len() / self.in_len
    }

    fn in_len(&self) -> usize {
        self.in_len
    }

    fn out_len(&self) -> usize {
        self.out_len
    }

    fn get(&self, i: usize, x: &mut [f32], y: &mut [f32]) {
        x.copy_from_slice(&self.x[i * self.in_len..][..self.in_len]);
        y.copy_from_slice(&self.y[i * self.out_len..][..self.out_len]);
    }
}

impl Samples {
    /// Samples `range` of these.
    fn slice(&self, range: std::ops::Range<usize>) -> Samples {
        Samples {
            x: self.x[range.start * self.in_len..range.end * self.in_len].to_vec(),
            y: self.y[range.start * self.out_len..range.end * self.out_len].to_vec(),
            ..*self
        }
    }
}

/// Training and validation sets and the shape they imply.
pub enum TrainData {
    /// A synthetic task's train and validation splits.
    Synthetic(Synthetic, Synthetic),
    /// Rows of the user's file: the first `n_train` for training, the rest for validation.
    Csv(Samples, Samples),
}

impl TrainData {
    /// The training set.
    pub fn train(&self) -> &dyn Dataset {
        match self {
            TrainData::Synthetic(t, _) => t,
            TrainData::Csv(t, _) => t,
        }
    }

    /// The validation set.
    pub fn val(&self) -> &dyn Dataset {
        match self {
            TrainData::Synthetic(_, v) => v,
            TrainData::Csv(_, v) => v,
        }
    }
}

/// Read `path` as training data laid out as `layout`; the last `val_fraction` of the rows
/// (at least one) validate. Returns the sets and the shape the model must have.
pub fn read_training_csv(
    path: &Path,
    layout: Layout,
    val_fraction: f32,
    header: HeaderRow,
) -> Result<(TrainData, Shape), String> {
    let rows = read_rows(path, header)?;
    training_from_rows(rows, &path.display().to_string(), layout, val_fraction)
}

/// [`read_training_csv`] of rows already parsed; `name` names the file in errors.
pub fn training_from_rows(
    rows: Rows,
    name: &str,
    layout: Layout,
    val_fraction: f32,
) -> Result<(TrainData, Shape), String> {
    if !(0.0..1.0).contains(&val_fraction) || val_fraction.is_nan() {
        return Err("--val_fraction must be in [0, 1)".into());
    }
    let width = rows.width;
    let dims = match layout {
        Layout::PerSample { in_dim, out_dim, .. } | Layout::Seq2Seq { in_dim, out_dim, .. } => {
            [in_dim, out_dim]
        }
        Layout::Autoregressive { dim } => [dim, dim],
    };
    if dims.contains(&0) {
        return Err("input_dim and output_dim must be at least 1".into());
    }
    let shape = match layout {
        Layout::PerSample { sequence, in_dim, out_dim } => {
            if width <= out_dim {
                return Err(format!(
                    "{name}: rows have {width} values; they need inputs and {out_dim} target(s)"
                ));
            }
            let inputs = width - out_dim;
            if !sequence {
                Shape { in_dim: inputs, out_dim, seq_len: 1, target_len: 1 }
            } else if !inputs.is_multiple_of(in_dim) {
                return Err(format!(
                    "{name}: rows have {inputs} input values (+ {out_dim} target(s)), not a multiple of input_dim {in_dim}"
                ));
            } else {
                Shape { in_dim, out_dim, seq_len: inputs / in_dim, target_len: 1 }
            }
        }
        Layout::Autoregressive { dim } => {
            if !width.is_multiple_of(dim) || width / dim < 2 {
                return Err(format!(
                    "{name}: rows have {width} values; a series needs at least 2 positions of input_dim {dim}"
                ));
            }
            Shape { in_dim: dim, out_dim: dim, seq_len: width / dim - 1, target_len: width / dim - 1 }
        }
        Layout::Seq2Seq { in_dim, out_dim, target_len } => {
            let (src, tgt) = match target_len {
                Some(t)
                    if t.checked_mul(out_dim)
                        .is_some_and(|tw| width > tw && (width - tw).is_multiple_of(in_dim)) =>
                {
                    ((width - t * out_dim) / in_dim, t)
                }
                None if in_dim.checked_add(out_dim).is_some_and(|w| width.is_multiple_of(w)) => {
                    (width / (in_dim + out_dim), width / (in_dim + out_dim))
                }
                _ => {
                    return Err(format!(
                        "{name}: rows have {width} values, which do not split into a source of input_dim {in_dim} and a target of {} output_dim {out_dim}",
                        target_len.map_or("equal length".to_string(), |t| format!("{t} positions of"))
                    ));
                }
            };
            Shape { in_dim, out_dim, seq_len: src, target_len: tgt }
        }
    };
    let (in_len, out_len) = (shape.in_len(), shape.out_len());
    let n = rows.values.len() / width;
    let (mut x, mut y) = (Vec::with_capacity(n * in_len), Vec::with_capacity(n * out_len));
    for row in rows.values.chunks_exact(width) {
        match layout {
            Layout::Autoregressive { dim } => {
                x.extend_from_slice(&row[..width - dim]);
                y.extend_from_slice(&row[dim..]);
            }
            _ => {
                x.extend_from_slice(&row[..in_len]);
                y.extend_from_slice(&row[in_len..]);
            }
        }
    }
    let n_val = ((n as f32 * val_fraction).round() as usize).max(1);
    if n < n_val + 1 {
        return Err(format!("{name}: {n} row(s); training and validation need at least 2"));
    }
    let all = Samples { x, y, in_len, out_len };
    Ok((TrainData::Csv(all.slice(0..n - n_val), all.slice(n - n_val..n)), shape))
}

/// The numbers of a CSV file, row-major, every row `width` values.
pub struct Rows {
    /// All values.
    pub values: Vec<f32>,
    /// Values per row.
    pub width: usize,
}

/// Read a CSV file of numbers (see the module docs), with errors naming line and column.
pub fn read_rows(path: &Path, header: HeaderRow) -> Result<Rows, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse_rows_with(&text, header).map_err(|e| format!("{}: {e}", path.display()))
}

/// Whether a CSV's first row is a header of names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum HeaderRow {
    /// A header exactly when no cell of the first row is a number.
    #[default]
    Auto,
    /// The first row is a header, whatever it holds.
    Yes,
    /// There is no header: the first row is data.
    No,
}

/// A cell for an error message: at most [`CLIP`] characters of it, with an ellipsis.
pub fn clip(cell: &str) -> String {
    match cell.char_indices().nth(CLIP) {
        Some((at, _)) => format!("{}…", &cell[..at]),
        None => cell.to_string(),
    }
}

/// Characters of a bad cell quoted in an error.
const CLIP: usize = 32;

#[cfg(test)]
/// Parse CSV text of numbers, with a header row detected ([`HeaderRow::Auto`]).
pub fn parse_rows(text: &str) -> Result<Rows, String> {
    parse_rows_with(text, HeaderRow::Auto)
}

/// Parse CSV text of numbers. A UTF-8 byte-order mark is skipped; every cell after the header
/// must be a finite number, or the error names its line and column.
pub fn parse_rows_with(text: &str, header: HeaderRow) -> Result<Rows, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut values = Vec::new();
    let mut width: Option<(usize, usize)> = None; // (values per row, line of the first row)
    let mut first = true;
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        let parsed: Vec<Result<f32, _>> = cells.iter().map(|c| c.parse::<f32>()).collect();
        let is_header = match header {
            HeaderRow::Auto => parsed.iter().all(Result::is_err) && cells.iter().all(|c| !c.is_empty()),
            HeaderRow::Yes => true,
            HeaderRow::No => false,
        };
        if first && is_header {
            // A header row of names.
            first = false;
            continue;
        }
        first = false;
        for (col, (cell, v)) in cells.iter().zip(&parsed).enumerate() {
            let cell = clip(cell);
            match v {
                Ok(v) if v.is_finite() => values.push(*v),
                Ok(_) => return Err(format!("line {line_no}, column {}: {cell:?} is not finite", col + 1)),
                Err(_) => {
                    return Err(format!("line {line_no}, column {}: {cell:?} is not a number", col + 1));
                }
            }
        }
        match width {
            None => width = Some((cells.len(), line_no)),
            Some((w, at)) if w != cells.len() => {
                return Err(format!(
                    "line {line_no} has {} values, line {at} has {w}: rows must all be as long",
                    cells.len()
                ));
            }
            Some(_) => {}
        }
    }
    let (width, _) = width.ok_or("no data rows")?;
    Ok(Rows { values, width })
}

/// The synthetic task's splits, with sequences of `seq_len` tokens (sequence tasks).
pub fn synthetic(
    task: Task,
    seed: u64,
    (train_size, val_size): (usize, usize),
    seq_len: usize,
) -> Result<TrainData, String> {
    let (t, v) = Synthetic::split(task, seed, train_size, val_size);
    if !task.is_sequence() {
        return Ok(TrainData::Synthetic(t, v));
    }
    let with_len = |d: Synthetic| d.with_seq_len(seq_len).map_err(|e| format!("--seq_len: {e}"));
    Ok(TrainData::Synthetic(with_len(t)?, with_len(v)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("regkern-data-{}-{name}.csv", std::process::id()));
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn csv_rows_parse_with_a_header_comments_and_blank_lines() {
        let r = parse_rows("a,b,y\n# note\n1, 2, 3\n\n4,5,6.5\n").unwrap();
        assert_eq!((r.width, r.values), (3, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.5]));
        assert_eq!(
            parse_rows("1,2\n3\n").err().unwrap(),
            "line 2 has 1 values, line 1 has 2: rows must all be as long"
        );
        assert_eq!(parse_rows("1,2\n3,x\n").err().unwrap(), "line 2, column 2: \"x\" is not a number");
        assert_eq!(parse_rows("1,2\n3,\n").err().unwrap(), "line 2, column 2: \"\" is not a number");
        assert_eq!(parse_rows("1,nan\n").err().unwrap(), "line 1, column 2: \"nan\" is not finite");
        assert_eq!(parse_rows("# nothing\n").err().unwrap(), "no data rows");
    }

    #[test]
    fn a_header_is_a_row_without_numbers() {
        // A typo in the first data row is an error, not a header.
        assert_eq!(
            parse_rows("1,2,3.O,4\n5,6,7,8\n").err().unwrap(),
            "line 1, column 3: \"3.O\" is not a number"
        );
        assert_eq!(parse_rows("x,2\n3,4\n").err().unwrap(), "line 1, column 1: \"x\" is not a number");
        // A byte-order mark is skipped, with or without a header.
        assert_eq!(parse_rows("\u{feff}1,2\n3,4\n").unwrap().values, vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(parse_rows("\u{feff}a,b\n3,4\n").unwrap().values, vec![3.0, 4.0]);
        // --header yes and no override the detection.
        assert_eq!(parse_rows_with("1,2\n3,4\n", HeaderRow::Yes).unwrap().values, vec![3.0, 4.0]);
        assert!(parse_rows_with("a,b\n3,4\n", HeaderRow::No).is_err());
        // A huge bad cell is quoted in part.
        let big = format!("1,{}\n", "z".repeat(1 << 20));
        let e = parse_rows(&format!("1,2\n{big}")).err().unwrap();
        assert!(e.len() < 100 && e.contains("zzz…"), "{e}");
    }

    #[test]
    fn rows_split_by_layout() {
        let p = write("feat", "1,2,3\n4,5,6\n7,8,9\n10,11,12\n");
        let (d, s) = read_training_csv(
            &p,
            Layout::PerSample { sequence: false, in_dim: 1, out_dim: 1 },
            0.25,
            HeaderRow::Auto,
        )
        .unwrap();
        assert_eq!(s, Shape { in_dim: 2, out_dim: 1, seq_len: 1, target_len: 1 });
        assert_eq!((d.train().len(), d.val().len()), (3, 1));
        let (mut x, mut y) = ([0.0; 2], [0.0; 1]);
        d.val().get(0, &mut x, &mut y);
        assert_eq!((x, y), ([10.0, 11.0], [12.0]));
        let (d, s) = read_training_csv(&p, Layout::Autoregressive { dim: 1 }, 0.25, HeaderRow::Auto).unwrap();
        assert_eq!(s, Shape { in_dim: 1, out_dim: 1, seq_len: 2, target_len: 2 });
        let (mut x, mut y) = ([0.0; 2], [0.0; 2]);
        d.train().get(1, &mut x, &mut y);
        assert_eq!((x, y), ([4.0, 5.0], [5.0, 6.0]));
        let p = write("s2s", "1,2,3,4\n5,6,7,8\n");
        let (d, s) = read_training_csv(
            &p,
            Layout::Seq2Seq { in_dim: 1, out_dim: 1, target_len: None },
            0.5,
            HeaderRow::Auto,
        )
        .unwrap();
        assert_eq!(s, Shape { in_dim: 1, out_dim: 1, seq_len: 2, target_len: 2 });
        let (mut x, mut y) = ([0.0; 2], [0.0; 2]);
        d.train().get(0, &mut x, &mut y);
        assert_eq!((x, y), ([1.0, 2.0], [3.0, 4.0]));
        let (_, s) = read_training_csv(
            &p,
            Layout::Seq2Seq { in_dim: 1, out_dim: 1, target_len: Some(1) },
            0.5,
            HeaderRow::Auto,
        )
        .unwrap();
        assert_eq!((s.seq_len, s.target_len), (3, 1));
        let err = read_training_csv(
            &p,
            Layout::PerSample { sequence: true, in_dim: 2, out_dim: 1 },
            0.5,
            HeaderRow::Auto,
        )
        .err()
        .unwrap();
        assert!(err.contains("not a multiple of input_dim 2"), "{err}");
        let err = read_training_csv(
            &p,
            Layout::Seq2Seq { in_dim: 2, out_dim: 1, target_len: None },
            0.5,
            HeaderRow::Auto,
        )
        .err()
        .unwrap();
        assert!(err.contains("do not split"), "{err}");
        let p = write("one", "1,2\n");
        let err = read_training_csv(
            &p,
            Layout::PerSample { sequence: false, in_dim: 1, out_dim: 1 },
            0.2,
            HeaderRow::Auto,
        )
        .err()
        .unwrap();
        assert!(err.contains("at least 2"), "{err}");
    }

    /// Widths of 0 or near `usize::MAX` (from `--target_len` or a library caller) are errors,
    /// never an overflow or a division by zero (the CSV fuzz target found the overflow).
    #[test]
    fn extreme_widths_are_errors() {
        let rows = || parse_rows("1,2,3,4\n5,6,7,8\n9,10,11,12\n").unwrap();
        let layouts = [
            Layout::Seq2Seq { in_dim: usize::MAX, out_dim: 1, target_len: None },
            Layout::Seq2Seq { in_dim: 1, out_dim: 1, target_len: Some(usize::MAX) },
            Layout::Seq2Seq { in_dim: 2, out_dim: usize::MAX / 2, target_len: Some(3) },
            Layout::Seq2Seq { in_dim: 0, out_dim: 1, target_len: None },
            Layout::PerSample { sequence: true, in_dim: 0, out_dim: 1 },
            Layout::PerSample { sequence: false, in_dim: 1, out_dim: usize::MAX },
            Layout::Autoregressive { dim: 0 },
            Layout::Autoregressive { dim: usize::MAX },
        ];
        for layout in layouts {
            assert!(training_from_rows(rows(), "f.csv", layout, 0.3).is_err(), "{layout:?}");
        }
    }
}
