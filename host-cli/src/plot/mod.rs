//! Prediction plots as PNG (for files and TensorBoard image summaries) and SVG.
//!
//! Two kinds: [`scatter`] (prediction vs target, one output per sample, with the y = x line) and
//! [`curves`] (overlaid lines over position index, e.g. target solid vs prediction dashed per
//! validation sequence). Both have a title, axes with "nice" ticks (1, 2 or 5 × 10^k), axis labels
//! and a legend to the right of the plot area.
//!
//! A [`Figure`] holds data coordinates. Drawing lays it out once into pixel-space shapes, which
//! [`Figure::to_png`] rasterizes (with the 5×7 bitmap font below) and [`Figure::to_svg`] writes as
//! vector elements, so the two files show the same picture. Non-finite values are skipped; a figure
//! with no finite data is drawn as empty axes saying "no finite data".
//!
//! ```ignore
//! let fig = plot::scatter(&pred, &target, "validation: prediction vs target");
//! std::fs::write("pred.png", fig.to_png())?;
//! std::fs::write("pred.svg", fig.to_svg())?;
//! ```

mod font;
mod layout;
mod raster;
mod svg;

use raster::Canvas;
use svg::write_svg_shape;

/// Figure width in pixels.
const WIDTH: u32 = 640;
/// Figure height in pixels.
const HEIGHT: u32 = 400;

/// An RGB colour, 8 bits per channel.
type Rgb = [u8; 3];

const WHITE: Rgb = [255, 255, 255];
const INK: Rgb = [32, 32, 32];
const FRAME: Rgb = [96, 96, 96];
const GRID: Rgb = [228, 228, 228];
/// Colour of the y = x reference line.
const DIAGONAL: Rgb = [214, 39, 40];

/// Matplotlib's "tab10" colours, for callers that colour series by index (`PALETTE[i % 10]`).
pub const PALETTE: [[u8; 3]; 10] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
];

/// One line of a [`curves`] figure.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Legend text (shown truncated past 22 characters).
    pub label: String,
    /// y value at positions 0, 1, 2, ...; a non-finite value leaves a gap in the line.
    pub values: Vec<f32>,
    /// Line colour, RGB.
    pub color: [u8; 3],
    /// Draw dashed instead of solid (e.g. prediction dashed, target solid).
    pub dashed: bool,
}

/// A plot ready to be drawn: data in data coordinates plus axis ranges, labels and legend.
#[derive(Clone, Debug)]
pub struct Figure {
    title: String,
    x_label: &'static str,
    y_label: &'static str,
    /// Axis ranges in data units, margins included.
    x: Span,
    y: Span,
    marks: Vec<Mark>,
    legend: Vec<Key>,
    /// No finite data point: the plot area says so.
    empty: bool,
}

/// A closed data interval `[lo, hi]` with `lo < hi`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Span {
    lo: f64,
    hi: f64,
}

/// Something drawn in data coordinates.
#[derive(Clone, Debug)]
enum Mark {
    /// A dot at each point.
    Points { xy: Vec<[f64; 2]>, color: Rgb },
    /// A polyline through the points (one finite run of a series).
    Line { xy: Vec<[f64; 2]>, color: Rgb, dashed: bool },
}

/// One legend entry.
#[derive(Clone, Debug)]
struct Key {
    label: String,
    color: Rgb,
    style: KeyStyle,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum KeyStyle {
    Dot,
    Solid,
    Dashed,
}

/// Prediction (y) vs target (x), one dot per sample, with the y = x line. Pairs are taken
/// index by index up to the shorter slice; a pair with a non-finite value is skipped. Both axes
/// share one range, so a perfect model lies on the diagonal.
pub fn scatter(pred: &[f32], target: &[f32], title: &str) -> Figure {
    let xy: Vec<[f64; 2]> = target
        .iter()
        .zip(pred)
        .filter(|(t, p)| t.is_finite() && p.is_finite())
        .map(|(&t, &p)| [f64::from(t), f64::from(p)])
        .collect();
    let span = Span::of(xy.iter().flatten().copied());
    let (lo, hi) = (span.lo, span.hi);
    let legend = vec![
        Key { label: format!("prediction (n={})", xy.len()), color: PALETTE[0], style: KeyStyle::Dot },
        Key { label: "y = x".to_owned(), color: DIAGONAL, style: KeyStyle::Solid },
    ];
    let empty = xy.is_empty();
    // The diagonal first, so the dots are drawn over it; no diagonal across an empty plot.
    let marks = if empty {
        Vec::new()
    } else {
        vec![
            Mark::Line { xy: vec![[lo, lo], [hi, hi]], color: DIAGONAL, dashed: false },
            Mark::Points { xy, color: PALETTE[0] },
        ]
    };
    Figure {
        title: title.to_owned(),
        x_label: "target",
        y_label: "prediction",
        x: span,
        y: span,
        marks,
        legend,
        empty,
    }
}

/// Overlaid line curves, `series[i].values[j]` drawn at x = j. Non-finite values break a line;
/// a series with none left still gets its legend entry.
pub fn curves(title: &str, series: &[Series]) -> Figure {
    let mut marks = Vec::new();
    for s in series {
        let mut run = Vec::new();
        for (j, &v) in s.values.iter().enumerate() {
            if v.is_finite() {
                run.push([j as f64, f64::from(v)]);
            } else if !run.is_empty() {
                marks.push(Mark::Line { xy: std::mem::take(&mut run), color: s.color, dashed: s.dashed });
            }
        }
        if !run.is_empty() {
            marks.push(Mark::Line { xy: run, color: s.color, dashed: s.dashed });
        }
    }
    let points = || {
        marks.iter().flat_map(|m| match m {
            Mark::Line { xy, .. } | Mark::Points { xy, .. } => xy.iter(),
        })
    };
    let x = Span::of(points().map(|p| p[0]));
    let y = Span::of(points().map(|p| p[1]));
    let legend = series
        .iter()
        .map(|s| Key {
            label: s.label.clone(),
            color: s.color,
            style: if s.dashed { KeyStyle::Dashed } else { KeyStyle::Solid },
        })
        .collect();
    let empty = marks.is_empty();
    Figure { title: title.to_owned(), x_label: "position", y_label: "value", x, y, marks, legend, empty }
}

impl Span {
    /// The range of the finite `values`, widened by 5% on each side; [0, 1] when there are none.
    fn of(values: impl Iterator<Item = f64>) -> Span {
        let (lo, hi) = values
            .filter(|v| v.is_finite())
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
        if lo > hi {
            return Span { lo: 0.0, hi: 1.0 };
        }
        // A single value gets a band around it: 10% of its size, or ±1 around zero.
        let pad = if hi > lo {
            0.05 * (hi - lo)
        } else if lo == 0.0 {
            1.0
        } else {
            0.1 * lo.abs()
        };
        Span { lo: lo - pad, hi: hi + pad }
    }

    fn len(self) -> f64 {
        self.hi - self.lo
    }
}

impl Figure {
    /// Size of the drawn figure, (width, height) in pixels; the SVG uses the same user units.
    pub fn size(&self) -> (u32, u32) {
        (WIDTH, HEIGHT)
    }

    /// The figure as a PNG file (8-bit RGB, [`Figure::size`] pixels).
    pub fn to_png(&self) -> Vec<u8> {
        let mut canvas = Canvas::new(WIDTH, HEIGHT);
        for shape in self.layout() {
            canvas.draw(&shape);
        }
        canvas.encode_png()
    }

    /// The figure as a standalone SVG document (`<svg ...> ... </svg>`), text as `<text>` elements.
    pub fn to_svg(&self) -> String {
        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
             viewBox=\"0 0 {WIDTH} {HEIGHT}\" font-family=\"monospace\">\n"
        );
        for shape in self.layout() {
            write_svg_shape(&mut svg, &shape);
        }
        svg.push_str("</svg>\n");
        svg
    }
}

#[cfg(test)]
mod tests {
    use super::layout::Anchor;
    use super::*;

    // `decode` and the demo figures serve the tests of the submodules too.

    /// Decode a PNG; returns (width, height, RGB8 pixels).
    pub(super) fn decode(png_bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        let mut reader = png::Decoder::new(std::io::Cursor::new(png_bytes)).read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.color_type, info.bit_depth), (png::ColorType::Rgb, png::BitDepth::Eight));
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    pub(super) fn demo_series() -> Vec<Series> {
        let mut out = Vec::new();
        for (s, &color) in PALETTE.iter().enumerate().take(3) {
            let phase = s as f32 * 0.9;
            let target: Vec<f32> =
                (0..48).map(|i| (i as f32 * 0.25 + phase).sin() * (1.0 + 0.3 * s as f32)).collect();
            let pred =
                target.iter().enumerate().map(|(i, t)| t * 0.85 + 0.1 * (i as f32 * 1.7).cos()).collect();
            out.push(Series { label: format!("seq {s} target"), values: target, color, dashed: false });
            out.push(Series { label: format!("seq {s} prediction"), values: pred, color, dashed: true });
        }
        out
    }

    pub(super) fn demo_scatter() -> Figure {
        let mut seed = 12345u32;
        let mut noise = || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1 << 24) as f32 - 0.5
        };
        let target: Vec<f32> = (0..200).map(|_| 4.0 * noise()).collect();
        let pred: Vec<f32> = target.iter().map(|t| 0.9 * t + 0.4 * noise()).collect();
        scatter(&pred, &target, "validation: prediction vs target (mlp, epoch 20)")
    }

    #[test]
    fn empty_and_non_finite_inputs_draw_empty_axes() {
        let nan = f32::NAN;
        let figs = [
            scatter(&[], &[], "empty"),
            scatter(&[nan, f32::INFINITY], &[1.0, 2.0], "all nan"),
            scatter(&[1.0, 2.0, 3.0], &[1.0], "lengths differ"),
            scatter(&[5.0], &[5.0], "one point"),
            scatter(&[0.0, 0.0], &[0.0, 0.0], "all zero"),
            scatter(&[f32::MAX, -f32::MAX], &[f32::MAX, -f32::MAX], "huge"),
            scatter(&[1e-30, 2e-30], &[1e-30, 3e-30], "tiny"),
            curves("no series", &[]),
            curves(
                "nan gaps",
                &[Series {
                    label: String::new(),
                    values: vec![nan, 1.0, nan, 2.0, 3.0],
                    color: [0; 3],
                    dashed: true,
                }],
            ),
            curves(
                "all nan",
                &[Series { label: "x".into(), values: vec![nan; 4], color: [0; 3], dashed: false }],
            ),
        ];
        for fig in &figs {
            let (w, h, _) = decode(&fig.to_png());
            assert_eq!((w, h), (WIDTH, HEIGHT), "{}", fig.title);
            assert!(fig.to_svg().contains(&fig.title));
            assert!(fig.x.lo < fig.x.hi && fig.y.lo < fig.y.hi, "{}: {:?} {:?}", fig.title, fig.x, fig.y);
        }
        assert!(figs[0].empty && figs[1].empty && figs[7].empty && figs[9].empty);
        assert!(!figs[8].empty);
    }

    /// Example figures for a person to look at: /tmp/plot_{scatter,curves,empty}.{png,svg} and
    /// /tmp/plot_font.png (every glyph at scale 1 and 2).
    #[test]
    #[ignore = "writes example files to /tmp for a visual check"]
    fn write_examples() {
        let scatter = demo_scatter();
        let curves = curves("validation sequences: target vs prediction", &demo_series());
        let empty = super::scatter(&[f32::NAN], &[1.0], "no data yet");
        for (name, fig) in [("scatter", &scatter), ("curves", &curves), ("empty", &empty)] {
            std::fs::write(format!("/tmp/plot_{name}.png"), fig.to_png()).unwrap();
            std::fs::write(format!("/tmp/plot_{name}.svg"), fig.to_svg()).unwrap();
        }
        let mut canvas = Canvas::new(WIDTH, 120);
        let all: String = (' '..='~').collect();
        for (row, chunk) in all.as_bytes().chunks(48).enumerate() {
            let text = std::str::from_utf8(chunk).unwrap();
            canvas.text([10.0, 15.0 + 12.0 * row as f32], text, 1, Anchor::Start, INK);
            canvas.text([10.0, 55.0 + 20.0 * row as f32], text, 2, Anchor::Start, INK);
        }
        std::fs::write("/tmp/plot_font.png", canvas.encode_png()).unwrap();
    }
}
