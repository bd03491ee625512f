//! Layout: a [`Figure`] in data coordinates laid out once into pixel-space [`Shape`]s, which the
//! raster and SVG back ends both draw, so the two files show the same picture. Holds the "nice"
//! ticks (1, 2 or 5 × 10^k) and their labels, the margins, grid, axes and labels, the data
//! clipped to the plot area, and the legend to its right.

use super::{FRAME, Figure, GRID, HEIGHT, INK, KeyStyle, Mark, Rgb, Span, WHITE, WIDTH};

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

/// Where text is anchored horizontally; vertically it is always centred on `at[1]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Anchor {
    Start,
    Middle,
    End,
}

/// A drawing primitive in pixel coordinates (y down, pixel (i, j) covers [i, i+1) × [j, j+1)).
#[derive(Clone, Debug)]
pub(super) enum Shape {
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
pub(super) const DASH: f32 = 7.0;
pub(super) const GAP: f32 = 5.0;
/// Width of data lines, pixels.
const LINE_W: f32 = 2.0;

/// Pixel width of `text` drawn with the bitmap font at `scale`.
pub(super) fn text_width(text: &str, scale: u32) -> f32 {
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
    /// Lay the figure out in pixels: background, title, grid, axes, data, legend.
    pub(super) fn layout(&self) -> Vec<Shape> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
