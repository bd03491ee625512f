//! SVG back end: each pixel-space [`Shape`] written as one SVG element (`<rect>`, `<polyline>`,
//! `<circle>`, `<text>`, and a clip path group for the plot area), in the same user units as the
//! PNG's pixels; text is XML-escaped.

use std::fmt::Write as _;

use super::Rgb;
use super::layout::{Anchor, DASH, GAP, Shape};

fn svg_color(c: Rgb) -> String {
    format!("rgb({},{},{})", c[0], c[1], c[2])
}

/// Append one shape as an SVG element.
pub(super) fn write_svg_shape(svg: &mut String, shape: &Shape) {
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

#[cfg(test)]
mod tests {
    use crate::plot::curves;
    use crate::plot::tests::demo_series;

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
}
