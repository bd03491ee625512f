//! Raster back end: a [`Canvas`] of RGB8 pixels that draws the pixel-space [`Shape`]s (filled
//! and stroked rectangles, dashed polylines stamped from discs, dots, text in the bitmap font)
//! with an optional clip rectangle, and encodes itself as a PNG file.

use super::Rgb;
use super::font::glyph;
use super::layout::{Anchor, DASH, GAP, Shape, text_width};

/// An RGB8 image, row-major, top row first.
pub(super) struct Canvas {
    width: usize,
    height: usize,
    rgb: Vec<u8>,
    /// Pixels drawn: x in [clip[0], clip[2]), y in [clip[1], clip[3]).
    clip: [i64; 4],
}

impl Canvas {
    pub(super) fn new(width: u32, height: u32) -> Canvas {
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
    pub(super) fn text(&mut self, at: [f32; 2], text: &str, scale: u32, anchor: Anchor, c: Rgb) {
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

    pub(super) fn draw(&mut self, shape: &Shape) {
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

    pub(super) fn encode_png(&self) -> Vec<u8> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plot::tests::{decode, demo_scatter, demo_series};
    use crate::plot::{DIAGONAL, Figure, GRID, WHITE, WIDTH, curves, scatter};

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
}
