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

use std::fmt::Write as _;

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

/// Tick values in `span`: multiples of a step of 1, 2 or 5 × 10^k, about `target` of them. Also
/// returns the step, which decides how the labels are formatted.
fn ticks(span: Span, target: usize) -> (Vec<f64>, f64) {
    // Of the nice steps around span / target, take the one whose tick count is nearest `target`
    // (by ratio). The 1e-9 keeps rounding noise (1.2 / 6 = 0.20000000000000004) from deciding.
    let raw = span.len() / target as f64;
    let mag = 10f64.powi(raw.log10().floor() as i32);
    let miss = |step: f64| (span.len() / step / target as f64).ln().abs();
    let step = [1.0, 2.0, 5.0, 10.0]
        .map(|m| m * mag)
        .into_iter()
        .fold(f64::NAN, |best, s| if best.is_nan() || miss(s) < miss(best) - 1e-9 { s } else { best });
    let first = (span.lo / step).ceil() as i64;
    let last = (span.hi / step).floor() as i64;
    // `+ 0.0` turns -0.0 into 0.0, so no "-0" label.
    let values = (first..=last).take(4 * target).map(|k| k as f64 * step + 0.0).collect();
    (values, step)
}

/// Labels for tick values `step` apart: plain decimals with as many places as the step needs,
/// or scientific notation (`1.5e-5`) for very large or very small values.
fn tick_labels(values: &[f64], step: f64) -> Vec<String> {
    let step_exp = step.log10().floor() as i32;
    let max_abs = values.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let max_exp = if max_abs > 0.0 { max_abs.log10().floor() as i32 } else { 0 };
    let scientific = max_exp >= 6 || step_exp <= -5;
    values
        .iter()
        .map(|&v| {
            if scientific {
                if v == 0.0 {
                    "0".to_owned()
                } else {
                    let digits = (v.abs().log10().floor() as i32 - step_exp).clamp(0, 6) as usize;
                    // "1.0e-5" -> "1e-5": trailing mantissa zeros carry nothing here.
                    let text = format!("{v:.digits$e}");
                    match text.split_once('e') {
                        Some((m, e)) if m.contains('.') => {
                            format!("{}e{e}", m.trim_end_matches('0').trim_end_matches('.'))
                        }
                        _ => text,
                    }
                }
            } else {
                let decimals = (-step_exp).max(0) as usize;
                format!("{v:.decimals$}")
            }
        })
        .collect()
}

// ---- layout: figure -> pixel-space shapes ----

/// Where text is anchored horizontally; vertically it is always centred on `at[1]`.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Anchor {
    Start,
    Middle,
    End,
}

/// A drawing primitive in pixel coordinates (y down, pixel (i, j) covers [i, i+1) × [j, j+1)).
#[derive(Clone, Debug)]
enum Shape {
    Rect {
        min: [f32; 2],
        max: [f32; 2],
        fill: Option<Rgb>,
        stroke: Option<Rgb>,
    },
    Polyline {
        pts: Vec<[f32; 2]>,
        color: Rgb,
        width: f32,
        dashed: bool,
    },
    Dot {
        at: [f32; 2],
        radius: f32,
        color: Rgb,
    },
    Text {
        at: [f32; 2],
        text: String,
        scale: u32,
        color: Rgb,
        anchor: Anchor,
    },
    /// Until the next `Clip`, draw only inside `[x0, y0, x1, y1]` (`None`: everywhere).
    Clip(Option<[f32; 4]>),
}

/// Width in pixels of one glyph cell of the bitmap font at scale 1 (5 columns + 1 space).
const CHAR_W: f32 = 6.0;
/// Longest legend label shown, in characters.
const MAX_LABEL_CHARS: usize = 22;
/// Vertical distance between legend entries, pixels.
const LEGEND_ROW: f32 = 14.0;
/// Length of a dash and of the gap after it, pixels.
const DASH: f32 = 7.0;
const GAP: f32 = 5.0;
/// Width of data lines, pixels.
const LINE_W: f32 = 2.0;

/// Pixel width of `text` drawn with the bitmap font at `scale`.
fn text_width(text: &str, scale: u32) -> f32 {
    (text.chars().count() as f32 * CHAR_W - 1.0).max(0.0) * scale as f32
}

/// `text` cut to `max` characters, ending in ".." when cut.
fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        text.chars().take(max.saturating_sub(2)).chain("..".chars()).collect()
    }
}

/// Snap a coordinate to a pixel centre, so 1-pixel lines land on one pixel row or column.
fn snap(v: f32) -> f32 {
    v.floor() + 0.5
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

    /// Lay the figure out in pixels: background, title, grid, axes, data, legend.
    fn layout(&self) -> Vec<Shape> {
        let (w, h) = (WIDTH as f32, HEIGHT as f32);
        // One tick target for both axes, so a scatter's shared range gets the same ticks on each.
        let (xt, x_step) = ticks(self.x, 7);
        let (yt, y_step) = ticks(self.y, 7);
        let x_labels = tick_labels(&xt, x_step);
        let y_labels = tick_labels(&yt, y_step);

        // Margins: room for the y tick labels on the left, the legend on the right.
        let y_label_w = y_labels.iter().map(|l| text_width(l, 1)).fold(0.0, f32::max);
        let legend_chars = self.legend.iter().map(|k| k.label.chars().count().min(MAX_LABEL_CHARS)).max();
        let legend_w = legend_chars.map_or(0.0, |n| 8.0 + 22.0 + 6.0 + n as f32 * CHAR_W + 6.0);
        let left = snap(14.0 + y_label_w + 8.0);
        let right = snap(w - 14.0 - if legend_w > 0.0 { legend_w + 12.0 } else { 0.0 });
        let (top, bottom) = (snap(44.0), snap(h - 40.0));
        let px = |x: f64| left + ((x - self.x.lo) / self.x.len()) as f32 * (right - left);
        let py = |y: f64| bottom - ((y - self.y.lo) / self.y.len()) as f32 * (bottom - top);

        let mut out = vec![Shape::Rect { min: [0.0, 0.0], max: [w, h], fill: Some(WHITE), stroke: None }];
        let title = truncate(&self.title, (w / (2.0 * CHAR_W)) as usize - 2);
        out.push(Shape::Text {
            at: [w / 2.0, 18.0],
            text: title,
            scale: 2,
            color: INK,
            anchor: Anchor::Middle,
        });

        // Grid lines, tick marks and tick labels.
        for (&v, label) in xt.iter().zip(x_labels) {
            let x = snap(px(v));
            out.push(line([x, top], [x, bottom], GRID));
            out.push(line([x, bottom], [x, bottom + 4.0], FRAME));
            let at = [x, bottom + 12.0];
            out.push(Shape::Text { at, text: label, scale: 1, color: INK, anchor: Anchor::Middle });
        }
        for (&v, label) in yt.iter().zip(y_labels) {
            let y = snap(py(v));
            out.push(line([left, y], [right, y], GRID));
            out.push(line([left - 4.0, y], [left, y], FRAME));
            out.push(Shape::Text {
                at: [left - 8.0, y],
                text: label,
                scale: 1,
                color: INK,
                anchor: Anchor::End,
            });
        }
        let (x_mid, y_mid) = ((left + right) / 2.0, (top + bottom) / 2.0);
        let at = [x_mid, bottom + 28.0];
        out.push(Shape::Text {
            at,
            text: self.x_label.to_owned(),
            scale: 1,
            color: INK,
            anchor: Anchor::Middle,
        });
        let at = [left, top - 10.0];
        out.push(Shape::Text {
            at,
            text: self.y_label.to_owned(),
            scale: 1,
            color: INK,
            anchor: Anchor::Start,
        });

        // Data, clipped to the plot area (line width and dots reach past the ranges' edges),
        // then the frame over its edges.
        out.push(Shape::Clip(Some([left, top, right, bottom])));
        for mark in &self.marks {
            match mark {
                Mark::Points { xy, color } => out.extend(xy.iter().map(|p| Shape::Dot {
                    at: [px(p[0]), py(p[1])],
                    radius: 2.5,
                    color: *color,
                })),
                Mark::Line { xy, color, dashed } => out.push(Shape::Polyline {
                    pts: xy.iter().map(|p| [px(p[0]), py(p[1])]).collect(),
                    color: *color,
                    width: LINE_W,
                    dashed: *dashed,
                }),
            }
        }
        out.push(Shape::Clip(None));
        if self.empty {
            let text = "no finite data".to_owned();
            out.push(Shape::Text {
                at: [x_mid, y_mid],
                text,
                scale: 2,
                color: FRAME,
                anchor: Anchor::Middle,
            });
        }
        out.push(Shape::Rect { min: [left, top], max: [right, bottom], fill: None, stroke: Some(FRAME) });

        // Legend: a box right of the plot area, one row per entry, "+N more" when they don't fit.
        if legend_w > 0.0 {
            let x0 = right + 12.0;
            let fits = (((bottom - top) - 8.0) / LEGEND_ROW).max(1.0) as usize;
            let shown = if self.legend.len() > fits { fits - 1 } else { self.legend.len() };
            let rows = shown + usize::from(shown < self.legend.len());
            let max = [x0 + legend_w, top + 8.0 + rows as f32 * LEGEND_ROW];
            out.push(Shape::Rect { min: [x0, top], max, fill: Some(WHITE), stroke: Some(FRAME) });
            for (i, key) in self.legend.iter().take(shown).enumerate() {
                let y = snap(top + 4.0 + LEGEND_ROW * (i as f32 + 0.5));
                let (a, b) = ([x0 + 8.0, y], [x0 + 30.0, y]);
                out.push(match key.style {
                    KeyStyle::Dot => Shape::Dot { at: [x0 + 19.0, y], radius: 2.5, color: key.color },
                    style => Shape::Polyline {
                        pts: vec![a, b],
                        color: key.color,
                        width: LINE_W,
                        dashed: style == KeyStyle::Dashed,
                    },
                });
                let text = truncate(&key.label, MAX_LABEL_CHARS);
                out.push(Shape::Text {
                    at: [x0 + 36.0, y],
                    text,
                    scale: 1,
                    color: INK,
                    anchor: Anchor::Start,
                });
            }
            if shown < self.legend.len() {
                let y = snap(top + 4.0 + LEGEND_ROW * (shown as f32 + 0.5));
                let text = format!("+{} more", self.legend.len() - shown);
                out.push(Shape::Text {
                    at: [x0 + 36.0, y],
                    text,
                    scale: 1,
                    color: INK,
                    anchor: Anchor::Start,
                });
            }
        }
        out
    }
}

/// A 1-pixel solid line from `a` to `b`.
fn line(a: [f32; 2], b: [f32; 2], color: Rgb) -> Shape {
    Shape::Polyline { pts: vec![a, b], color, width: 1.0, dashed: false }
}

// ---- SVG ----

fn svg_color(c: Rgb) -> String {
    format!("rgb({},{},{})", c[0], c[1], c[2])
}

/// Append one shape as an SVG element.
fn write_svg_shape(svg: &mut String, shape: &Shape) {
    // `write!` into a String cannot fail; the results are ignored.
    match shape {
        Shape::Rect { min, max, fill, stroke } => {
            let fill = fill.map_or("none".to_owned(), svg_color);
            let stroke = stroke.map_or("none".to_owned(), svg_color);
            let _ = writeln!(
                svg,
                "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{fill}\" stroke=\"{stroke}\"/>",
                min[0],
                min[1],
                max[0] - min[0],
                max[1] - min[1]
            );
        }
        Shape::Polyline { pts, color, width, dashed } => {
            let mut points = String::new();
            for p in pts {
                let _ = write!(points, "{:.2},{:.2} ", p[0], p[1]);
            }
            let dash = if *dashed { format!(" stroke-dasharray=\"{DASH} {GAP}\"") } else { String::new() };
            let _ = writeln!(
                svg,
                "<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"{width}\" \
                 stroke-linejoin=\"round\"{dash}/>",
                points.trim_end(),
                svg_color(*color)
            );
        }
        Shape::Dot { at, radius, color } => {
            let _ = writeln!(
                svg,
                "<circle cx=\"{:.2}\" cy=\"{:.2}\" r=\"{radius}\" fill=\"{}\"/>",
                at[0],
                at[1],
                svg_color(*color)
            );
        }
        Shape::Clip(Some([x0, y0, x1, y1])) => {
            let _ = writeln!(
                svg,
                "<clipPath id=\"plot-area\"><rect x=\"{x0}\" y=\"{y0}\" width=\"{}\" height=\"{}\"/></clipPath>\n\
                 <g clip-path=\"url(#plot-area)\">",
                x1 - x0,
                y1 - y0
            );
        }
        Shape::Clip(None) => svg.push_str("</g>\n"),
        Shape::Text { at, text, scale, color, anchor } => {
            let anchor = match anchor {
                Anchor::Start => "start",
                Anchor::Middle => "middle",
                Anchor::End => "end",
            };
            // The bitmap font's capitals are 7 px tall per scale; a 10 px monospace font matches.
            let _ = writeln!(
                svg,
                "<text x=\"{}\" y=\"{}\" font-size=\"{}\" fill=\"{}\" text-anchor=\"{anchor}\" \
                 dominant-baseline=\"central\">{}</text>",
                at[0],
                at[1],
                10 * scale,
                svg_color(*color),
                xml_escape(text)
            );
        }
    }
}

/// `text` with the XML special characters escaped.
fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

// ---- raster ----

/// An RGB8 image, row-major, top row first.
struct Canvas {
    width: usize,
    height: usize,
    rgb: Vec<u8>,
    /// Pixels drawn: x in [clip[0], clip[2]), y in [clip[1], clip[3]).
    clip: [i64; 4],
}

impl Canvas {
    fn new(width: u32, height: u32) -> Canvas {
        let (width, height) = (width as usize, height as usize);
        Canvas {
            width,
            height,
            rgb: vec![255; width * height * 3],
            clip: [0, 0, width as i64, height as i64],
        }
    }

    /// Draw only inside `rect` (x0, y0, x1, y1; pixels whose centres lie inside), or everywhere.
    fn set_clip(&mut self, rect: Option<[f32; 4]>) {
        let whole = [0, 0, self.width as i64, self.height as i64];
        self.clip = rect.map_or(whole, |r| r.map(|v| (v - 0.5).ceil() as i64));
    }

    /// Set pixel (x, y); pixels outside the canvas or the clip rectangle are ignored.
    fn put(&mut self, x: i64, y: i64, c: Rgb) {
        let [x0, y0, x1, y1] = self.clip;
        let inside = (x0..x1).contains(&x) && (y0..y1).contains(&y);
        if inside && (0..self.width as i64).contains(&x) && (0..self.height as i64).contains(&y) {
            let i = (y as usize * self.width + x as usize) * 3;
            self.rgb[i..i + 3].copy_from_slice(&c);
        }
    }

    /// Fill the pixels whose centres lie in [min, max).
    fn fill_rect(&mut self, min: [f32; 2], max: [f32; 2], c: Rgb) {
        let (x0, x1) = ((min[0] - 0.5).ceil() as i64, (max[0] - 0.5).ceil() as i64);
        let (y0, y1) = ((min[1] - 0.5).ceil() as i64, (max[1] - 0.5).ceil() as i64);
        for y in y0..y1 {
            for x in x0..x1 {
                self.put(x, y, c);
            }
        }
    }

    /// Fill the pixel containing `at` and every pixel whose centre is within `radius` of it.
    fn disc(&mut self, at: [f32; 2], radius: f32, c: Rgb) {
        self.put(at[0].floor() as i64, at[1].floor() as i64, c);
        let (x0, x1) = ((at[0] - radius).floor() as i64, (at[0] + radius).ceil() as i64);
        let (y0, y1) = ((at[1] - radius).floor() as i64, (at[1] + radius).ceil() as i64);
        for y in y0..=y1 {
            for x in x0..=x1 {
                let (dx, dy) = (x as f32 + 0.5 - at[0], y as f32 + 0.5 - at[1]);
                if dx * dx + dy * dy <= radius * radius {
                    self.put(x, y, c);
                }
            }
        }
    }

    /// Stroke a polyline by stamping discs every quarter pixel; dashes follow the length along
    /// the whole line, so they continue across vertices.
    fn polyline(&mut self, pts: &[[f32; 2]], width: f32, dashed: bool, c: Rgb) {
        let mut walked = 0.0f32;
        for seg in pts.windows(2) {
            let ([ax, ay], [bx, by]) = (seg[0], seg[1]);
            let len = (bx - ax).hypot(by - ay);
            let n = (len * 4.0).ceil().max(1.0) as usize;
            for i in 0..=n {
                let t = i as f32 / n as f32;
                let on = !dashed || (walked + t * len) % (DASH + GAP) < DASH;
                if on {
                    self.disc([ax + t * (bx - ax), ay + t * (by - ay)], width / 2.0, c);
                }
            }
            walked += len;
        }
    }

    /// Draw `text` with the bitmap font, `scale` pixels per font pixel.
    fn text(&mut self, at: [f32; 2], text: &str, scale: u32, anchor: Anchor, c: Rgb) {
        let w = text_width(text, scale);
        let x0 = match anchor {
            Anchor::Start => at[0],
            Anchor::Middle => at[0] - w / 2.0,
            Anchor::End => at[0] - w,
        }
        .round() as i64;
        let y0 = (at[1] - 3.5 * scale as f32).round() as i64;
        let s = i64::from(scale);
        for (i, ch) in text.chars().enumerate() {
            let gx = x0 + i as i64 * 6 * s;
            for (col, bits) in glyph(ch).iter().enumerate() {
                for row in 0..9 {
                    if bits >> row & 1 == 1 {
                        for (dx, dy) in (0..s).flat_map(|dx| (0..s).map(move |dy| (dx, dy))) {
                            self.put(gx + col as i64 * s + dx, y0 + row * s + dy, c);
                        }
                    }
                }
            }
        }
    }

    fn draw(&mut self, shape: &Shape) {
        match shape {
            Shape::Rect { min, max, fill, stroke } => {
                if let Some(c) = fill {
                    self.fill_rect(*min, *max, *c);
                }
                if let Some(c) = stroke {
                    let ([x0, y0], [x1, y1]) = (*min, *max);
                    self.polyline(&[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]], 1.0, false, *c);
                }
            }
            Shape::Polyline { pts, color, width, dashed } => self.polyline(pts, *width, *dashed, *color),
            Shape::Dot { at, radius, color } => self.disc(*at, *radius, *color),
            Shape::Text { at, text, scale, color, anchor } => self.text(*at, text, *scale, *anchor, *color),
            Shape::Clip(rect) => self.set_clip(*rect),
        }
    }

    fn encode_png(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, self.width as u32, self.height as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        // Invariant: the header is valid (non-zero size, RGB8) and `rgb` holds exactly
        // width * height * 3 bytes, and writing into a Vec cannot fail.
        let mut writer = enc.write_header().expect("valid RGB8 PNG header");
        writer.write_image_data(&self.rgb).expect("buffer matches the header's size");
        writer.finish().expect("writing into a Vec cannot fail");
        out
    }
}

// ---- font ----

/// Columns of the glyph for `c` (bit 0 = top row); '?' for characters outside ASCII 32..=126.
fn glyph(c: char) -> [u16; 5] {
    let i = (c as usize).wrapping_sub(32);
    FONT_5X7.get(i).copied().unwrap_or(FONT_5X7[usize::from(b'?' - 32)])
}

/// A 5×7 bitmap font for printable ASCII (32..=126), five columns per glyph, bit 0 = top row.
/// Rows 0..=6 sit on the baseline; rows 7 and 8 hold the descenders of `g j p q y , ;`.
/// Drawn for this module in the style of the classic HD44780 LCD character set.
#[rustfmt::skip]
const FONT_5X7: [[u16; 5]; 95] = [
    [0x000, 0x000, 0x000, 0x000, 0x000], // ' '
    [0x000, 0x000, 0x05F, 0x000, 0x000], // !
    [0x000, 0x007, 0x000, 0x007, 0x000], // "
    [0x014, 0x07F, 0x014, 0x07F, 0x014], // #
    [0x024, 0x02A, 0x07F, 0x02A, 0x012], // $
    [0x023, 0x013, 0x008, 0x064, 0x062], // %
    [0x036, 0x049, 0x055, 0x022, 0x050], // &
    [0x000, 0x005, 0x003, 0x000, 0x000], // '
    [0x000, 0x01C, 0x022, 0x041, 0x000], // (
    [0x000, 0x041, 0x022, 0x01C, 0x000], // )
    [0x014, 0x008, 0x03E, 0x008, 0x014], // *
    [0x008, 0x008, 0x03E, 0x008, 0x008], // +
    [0x000, 0x080, 0x060, 0x000, 0x000], // ,
    [0x008, 0x008, 0x008, 0x008, 0x008], // -
    [0x000, 0x060, 0x060, 0x000, 0x000], // .
    [0x020, 0x010, 0x008, 0x004, 0x002], // /
    [0x03E, 0x051, 0x049, 0x045, 0x03E], // 0
    [0x000, 0x042, 0x07F, 0x040, 0x000], // 1
    [0x042, 0x061, 0x051, 0x049, 0x046], // 2
    [0x021, 0x041, 0x045, 0x04B, 0x031], // 3
    [0x018, 0x014, 0x012, 0x07F, 0x010], // 4
    [0x027, 0x045, 0x045, 0x045, 0x039], // 5
    [0x03C, 0x04A, 0x049, 0x049, 0x030], // 6
    [0x001, 0x071, 0x009, 0x005, 0x003], // 7
    [0x036, 0x049, 0x049, 0x049, 0x036], // 8
    [0x006, 0x049, 0x049, 0x029, 0x01E], // 9
    [0x000, 0x036, 0x036, 0x000, 0x000], // :
    [0x000, 0x080, 0x076, 0x000, 0x000], // ;
    [0x008, 0x014, 0x022, 0x041, 0x000], // <
    [0x014, 0x014, 0x014, 0x014, 0x014], // =
    [0x000, 0x041, 0x022, 0x014, 0x008], // >
    [0x002, 0x001, 0x051, 0x009, 0x006], // ?
    [0x032, 0x049, 0x079, 0x041, 0x03E], // @
    [0x07E, 0x011, 0x011, 0x011, 0x07E], // A
    [0x07F, 0x049, 0x049, 0x049, 0x036], // B
    [0x03E, 0x041, 0x041, 0x041, 0x022], // C
    [0x07F, 0x041, 0x041, 0x022, 0x01C], // D
    [0x07F, 0x049, 0x049, 0x049, 0x041], // E
    [0x07F, 0x009, 0x009, 0x009, 0x001], // F
    [0x03E, 0x041, 0x049, 0x049, 0x07A], // G
    [0x07F, 0x008, 0x008, 0x008, 0x07F], // H
    [0x000, 0x041, 0x07F, 0x041, 0x000], // I
    [0x020, 0x040, 0x041, 0x03F, 0x001], // J
    [0x07F, 0x008, 0x014, 0x022, 0x041], // K
    [0x07F, 0x040, 0x040, 0x040, 0x040], // L
    [0x07F, 0x002, 0x00C, 0x002, 0x07F], // M
    [0x07F, 0x004, 0x008, 0x010, 0x07F], // N
    [0x03E, 0x041, 0x041, 0x041, 0x03E], // O
    [0x07F, 0x009, 0x009, 0x009, 0x006], // P
    [0x03E, 0x041, 0x051, 0x021, 0x05E], // Q
    [0x07F, 0x009, 0x019, 0x029, 0x046], // R
    [0x046, 0x049, 0x049, 0x049, 0x031], // S
    [0x001, 0x001, 0x07F, 0x001, 0x001], // T
    [0x03F, 0x040, 0x040, 0x040, 0x03F], // U
    [0x01F, 0x020, 0x040, 0x020, 0x01F], // V
    [0x03F, 0x040, 0x038, 0x040, 0x03F], // W
    [0x063, 0x014, 0x008, 0x014, 0x063], // X
    [0x007, 0x008, 0x070, 0x008, 0x007], // Y
    [0x061, 0x051, 0x049, 0x045, 0x043], // Z
    [0x000, 0x07F, 0x041, 0x041, 0x000], // [
    [0x002, 0x004, 0x008, 0x010, 0x020], // backslash
    [0x000, 0x041, 0x041, 0x07F, 0x000], // ]
    [0x004, 0x002, 0x001, 0x002, 0x004], // ^
    [0x040, 0x040, 0x040, 0x040, 0x040], // _
    [0x000, 0x001, 0x002, 0x004, 0x000], // `
    [0x020, 0x054, 0x054, 0x054, 0x078], // a
    [0x07F, 0x048, 0x044, 0x044, 0x038], // b
    [0x038, 0x044, 0x044, 0x044, 0x020], // c
    [0x038, 0x044, 0x044, 0x048, 0x07F], // d
    [0x038, 0x054, 0x054, 0x054, 0x018], // e
    [0x008, 0x07E, 0x009, 0x001, 0x002], // f
    [0x038, 0x144, 0x144, 0x144, 0x0FC], // g
    [0x07F, 0x008, 0x004, 0x004, 0x078], // h
    [0x000, 0x044, 0x07D, 0x040, 0x000], // i
    [0x080, 0x100, 0x104, 0x0FD, 0x000], // j
    [0x07F, 0x010, 0x028, 0x044, 0x000], // k
    [0x000, 0x041, 0x07F, 0x040, 0x000], // l
    [0x07C, 0x004, 0x018, 0x004, 0x078], // m
    [0x07C, 0x008, 0x004, 0x004, 0x078], // n
    [0x038, 0x044, 0x044, 0x044, 0x038], // o
    [0x1FC, 0x044, 0x044, 0x044, 0x038], // p
    [0x038, 0x044, 0x044, 0x044, 0x1FC], // q
    [0x07C, 0x008, 0x004, 0x004, 0x008], // r
    [0x048, 0x054, 0x054, 0x054, 0x020], // s
    [0x004, 0x03F, 0x044, 0x040, 0x020], // t
    [0x03C, 0x040, 0x040, 0x020, 0x07C], // u
    [0x01C, 0x020, 0x040, 0x020, 0x01C], // v
    [0x03C, 0x040, 0x030, 0x040, 0x03C], // w
    [0x044, 0x028, 0x010, 0x028, 0x044], // x
    [0x03C, 0x140, 0x140, 0x140, 0x0FC], // y
    [0x044, 0x064, 0x054, 0x04C, 0x044], // z
    [0x000, 0x008, 0x036, 0x041, 0x000], // {
    [0x000, 0x000, 0x07F, 0x000, 0x000], // |
    [0x000, 0x041, 0x036, 0x008, 0x000], // }
    [0x008, 0x004, 0x008, 0x010, 0x008], // ~
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Decode a PNG; returns (width, height, RGB8 pixels).
    fn decode(png_bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        let mut reader = png::Decoder::new(std::io::Cursor::new(png_bytes)).read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.color_type, info.bit_depth), (png::ColorType::Rgb, png::BitDepth::Eight));
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    fn pixel(rgb: &[u8], x: usize, y: usize) -> Rgb {
        let i = (y * WIDTH as usize + x) * 3;
        [rgb[i], rgb[i + 1], rgb[i + 2]]
    }

    /// Pixel position of data point (x, y), recomputed from the layout's plot-area frame.
    fn to_pixel(fig: &Figure, x: f64, y: f64) -> (usize, usize) {
        let frame = fig.layout().into_iter().rev().find_map(|s| match s {
            Shape::Rect { min, max, fill: None, .. } => Some((min, max)),
            _ => None,
        });
        let (min, max) = frame.unwrap();
        let px = min[0] + ((x - fig.x.lo) / fig.x.len()) as f32 * (max[0] - min[0]);
        let py = max[1] - ((y - fig.y.lo) / fig.y.len()) as f32 * (max[1] - min[1]);
        (px.floor() as usize, py.floor() as usize)
    }

    fn demo_series() -> Vec<Series> {
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

    fn demo_scatter() -> Figure {
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
    fn png_decodes_to_the_figure_size() {
        for fig in [demo_scatter(), curves("curves", &demo_series())] {
            let (w, h, rgb) = decode(&fig.to_png());
            assert_eq!((w, h), fig.size());
            assert_eq!(rgb.len(), (w * h * 3) as usize);
        }
    }

    #[test]
    fn diagonal_is_drawn_where_y_equals_x() {
        // Points on the anti-diagonal, so the y = x line at (2.5, 2.5) is far from every dot.
        let fig = scatter(&[0.0, 10.0], &[10.0, 0.0], "diag");
        let (_, _, rgb) = decode(&fig.to_png());
        let (x, y) = to_pixel(&fig, 2.5, 2.5);
        assert_eq!(pixel(&rgb, x, y), DIAGONAL, "pixel ({x}, {y}) on y = x");
        // And a spot off the line (2.5, 7.5) is background or grid, not ink.
        let (x, y) = to_pixel(&fig, 2.5, 7.5);
        let off = pixel(&rgb, x, y);
        assert!(off == WHITE || off == GRID, "pixel ({x}, {y}) off the line is {off:?}");
    }

    #[test]
    fn svg_has_the_title_and_is_one_element() {
        let fig = curves("a <b> & \"c\"", &demo_series());
        let svg = fig.to_svg();
        assert!(svg.starts_with("<svg"), "starts with {:?}", &svg[..20]);
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains(">a &lt;b&gt; &amp; &quot;c&quot;</text>"), "escaped title missing");
        assert!(svg.contains("stroke-dasharray"), "dashed series not dashed");
        assert_eq!(svg.matches("<svg").count(), 1);
        assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
        assert_eq!(svg.matches("<g").count(), svg.matches("</g>").count());
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

    #[test]
    fn ticks_are_one_two_or_five_times_a_power_of_ten() {
        let (t, step) = ticks(Span { lo: -0.13, hi: 1.07 }, 6);
        assert_eq!(step, 0.2);
        assert_eq!(tick_labels(&t, step), ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]);
        let (t, step) = ticks(Span { lo: -2.4, hi: 47.0 }, 7);
        assert_eq!(step, 5.0);
        assert_eq!(tick_labels(&t, step), ["0", "5", "10", "15", "20", "25", "30", "35", "40", "45"]);
        let (_, step) = ticks(Span { lo: -1.8, hi: 1.7 }, 6);
        assert_eq!(step, 0.5, "3.5 / 6 is nearer 7 ticks of 0.5 than 4 ticks of 1");
        let (t, step) = ticks(Span { lo: 0.0, hi: 3e-5 }, 6);
        assert_eq!(tick_labels(&t, step), ["0", "5e-6", "1e-5", "1.5e-5", "2e-5", "2.5e-5", "3e-5"]);
    }

    #[test]
    fn every_printable_ascii_character_has_a_glyph() {
        for c in ' '..='~' {
            assert_eq!(glyph(c), FONT_5X7[c as usize - 32]);
            assert!(c == ' ' || glyph(c) != [0; 5], "{c:?} is blank");
        }
        assert_eq!(glyph('é'), glyph('?'));
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
