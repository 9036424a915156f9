//! Owns the experiment runner's charts, drawn with plotters: line charts (panels side by side,
//! one line per configuration, one shared legend), grouped bar charts with error bars, and the
//! accuracy-versus-training-time scatter. Axes, ticks, text and legends are plotters'; this
//! module only picks sizes, colours and ranges.
//!
//! - `canvas`: the font (a TrueType file found on disk, registered with plotters once) and the
//!   PNG writer every chart goes through: drawn at `SCALE` times the size and averaged down
//!   (smooth lines, letters placed to a third of a pixel), written to a temporary file, renamed;
//! - `lines`, `bars`, `cost`: one chart each; the helpers below are what they share.
//!
//! Sizes in this module are pixels of the final image; `px` turns them into canvas pixels.

mod bars;
mod canvas;
mod cost;
mod lines;
#[cfg(test)]
mod tests;

pub use bars::bar_groups;
pub use cost::{accuracy_vs_measure, accuracy_vs_time, CostPoint};
pub use lines::line_panels;

use canvas::SCALE;
use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// One line of a line chart: a legend label and (x, y) points.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The line's name in the legend (it also fixes the line's colour and marker).
    pub label: String,
    /// The points `(x, y)` in drawing order; a point with a non-finite coordinate is left out
    /// and breaks the line there.
    pub points: Vec<(f64, f64)>,
}

/// One bar group entry: a configuration name and, per task, (mean, standard deviation); NaN
/// mean = missing (no bar).
#[derive(Debug, Clone, PartialEq)]
pub struct BarGroup {
    /// The configuration's name under its group (wrapped to the group's width).
    pub label: String,
    /// `(mean, standard deviation)` per series, in the chart's series order; a zero or
    /// non-finite deviation draws no error bar.
    pub values: Vec<(f64, f64)>,
}

type DrawResult<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;
type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

const TEXT: RGBColor = RGBColor(25, 25, 25);
const MUTED: RGBColor = RGBColor(105, 105, 105);
const GRID: RGBColor = RGBColor(225, 225, 225);

const TITLE_SIZE: f64 = 25.0;
const CAPTION_SIZE: f64 = 20.0;
const DESC_SIZE: f64 = 18.0;
const TICK_SIZE: f64 = 16.0;
const LEGEND_SIZE: f64 = 16.0;
const VALUE_SIZE: f64 = 14.0;
/// Height of the band the chart's title is centred in.
const TITLE_H: u32 = 48;
/// Legend labels longer than this are cut with an ellipsis.
const LEGEND_LABEL_W: u32 = 320;

/// Twelve colours that stay apart from each other (Tableau 10, then indigo and near-black).
const PALETTE: [RGBColor; 12] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
    RGBColor(57, 59, 121),
    RGBColor(30, 30, 30),
];

fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// Final-image pixels to canvas pixels.
fn px(v: u32) -> u32 {
    v * SCALE
}

/// Final-image pixels to canvas pixels, for offsets.
fn pxi(v: i32) -> i32 {
    v * SCALE as i32
}

/// The charts' font at `size` (final-image pixels) in `color`.
fn font(size: f64, color: RGBColor) -> TextStyle<'static> {
    (canvas::FAMILY, size * f64::from(SCALE)).into_font().color(&color)
}

/// Width of `text` in `style`, in canvas pixels.
fn text_width(text: &str, style: &TextStyle) -> u32 {
    style.font.box_size(text).map_or(0, |(w, _)| w)
}

/// How far to move a `VPos::Center` anchor down so that letters look centred on it: plotters
/// centres the text's layout box, whose baseline sits low, so the letters come out high.
fn centring(style: &TextStyle) -> i32 {
    (0.2 * style.font.get_size()).round() as i32
}

/// `text` cut (with an ellipsis) to fit `max_w` canvas pixels in `style`.
fn fit(text: &str, style: &TextStyle, max_w: u32) -> String {
    if text_width(text, style) <= max_w {
        return text.to_string();
    }
    let chars: Vec<char> = text.chars().collect();
    (1..chars.len())
        .rev()
        .map(|n| chars[..n].iter().collect::<String>().trim_end().to_string() + "…")
        .find(|cut| text_width(cut, style) <= max_w)
        .unwrap_or_else(|| "…".to_string())
}

/// Draws `text` with its letters centred on `at` (canvas pixels in `area`).
fn centred(area: &Area, text: &str, style: &TextStyle, at: (i32, i32)) -> DrawResult {
    let style = style.pos(Pos::new(HPos::Center, VPos::Center));
    area.draw_text(text, &style, (at.0, at.1 + centring(&style)))?;
    Ok(())
}

/// Draws `title` centred in a band at the top of `root`; returns the area below it.
fn draw_title<'a>(root: &Area<'a>, title: &str) -> DrawResult<Area<'a>> {
    let (band, body) = root.split_vertically(px(TITLE_H));
    let (w, h) = band.dim_in_pixel();
    let style = font(TITLE_SIZE, TEXT);
    centred(&band, &fit(title, &style, w.saturating_sub(px(40))), &style, (w as i32 / 2, h as i32 / 2 + pxi(2)))?;
    Ok(body)
}

/// Draws "no data" centred in a framed box filling `area`.
fn draw_no_data(area: &Area) -> DrawResult {
    let (w, h) = area.dim_in_pixel();
    let (w, h) = (w as i32, h as i32);
    area.draw(&Rectangle::new([(0, 0), (w - 1, h - 1)], GRID.stroke_width(px(1))))?;
    centred(area, "no data", &font(DESC_SIZE, MUTED), (w / 2, h / 2))
}

/// The axes' look, shared by every chart: light grid at the ticks only, grey axes, tick labels
/// and axis descriptions in the charts' font, tick labels centred on their ticks.
fn styled_mesh<'a, 'b, X, Y>(
    chart: &'b mut ChartContext<'a, BitMapBackend<'a>, Cartesian2d<X, Y>>,
) -> plotters::chart::MeshStyle<'a, 'b, X, Y, BitMapBackend<'a>>
where
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let tick = font(TICK_SIZE, TEXT);
    let mut mesh = chart.configure_mesh();
    mesh.bold_line_style(GRID.stroke_width(px(1)))
        .light_line_style(TRANSPARENT)
        .axis_style(MUTED.stroke_width(px(1)))
        .max_light_lines(0)
        .set_all_tick_mark_size(px(5))
        .y_label_offset(centring(&tick))
        .label_style(tick)
        .axis_desc_style(font(DESC_SIZE, TEXT));
    mesh
}

/// A formatter for the tick labels plotters puts on an axis from `lo` to `hi` when asked for
/// at most `n`: all with as many decimals as the step between them needs, or in scientific
/// notation ("2.5e-5") when they are tiny or huge.
fn tick_format(lo: f64, hi: f64, n: usize) -> impl Fn(&f64) -> String {
    let ticks = plotters::coord::types::RangedCoordf64::from(lo..hi).key_points(n);
    let step = ticks.windows(2).map(|w| w[1] - w[0]).fold(hi - lo, f64::min).abs();
    let decimals = match step {
        _ if ticks.iter().all(|t| t.fract() == 0.0) => 0,
        step if step > 0.0 => (-(step.log10() + 1e-9).floor()).max(0.0) as usize,
        _ => 2,
    };
    let scientific = decimals > 4 || lo.abs().max(hi.abs()) >= 1e6;
    move |&v: &f64| {
        let v = if v.abs() < step * 1e-6 { 0.0 } else { v };
        if !scientific {
            return format!("{v:.decimals$}");
        }
        if v == 0.0 {
            return "0".to_string();
        }
        let s = format!("{v:.3e}");
        let (mantissa, exponent) = s.split_once('e').unwrap_or((&s, "0"));
        format!("{}e{exponent}", mantissa.trim_end_matches('0').trim_end_matches('.'))
    }
}

/// A range around [lo, hi] with `frac` of its span (at least `min_pad`) on each side.
/// A span below 1e-3 of the values' magnitude counts as none (its ticks would print alike).
fn padded(lo: f64, hi: f64, frac: f64, min_pad: f64) -> (f64, f64) {
    let span = hi - lo;
    let span = if span < lo.abs().max(hi.abs()) * 1e-3 { 0.0 } else { span };
    let pad = if span > 0.0 {
        (span * frac).max(min_pad)
    } else if lo != 0.0 {
        (lo.abs() * frac).max(min_pad)
    } else {
        min_pad.max(0.5)
    };
    (lo - pad, hi + pad)
}

/// Width of a y label area for an axis from `lo` to `hi` with at most `n` ticks: the widest
/// tick label and the axis description.
fn y_area(lo: f64, hi: f64, n: usize) -> u32 {
    let (fmt, style) = (tick_format(lo, hi, n), font(TICK_SIZE, TEXT));
    let ticks = plotters::coord::types::RangedCoordf64::from(lo..hi).key_points(n);
    let widest = ticks.iter().map(|t| text_width(&fmt(t), &style)).max().unwrap_or(0);
    widest + px(10) + font(DESC_SIZE, TEXT).font.get_size() as u32 + px(14)
}

/// Marker shapes cycle with a period (5) coprime to the palette's (12), so the first 60 series
/// all differ in colour or shape.
const MARKERS: usize = 5;

/// The outline (canvas pixels around its centre) of marker number `index`: a disc, a square, a
/// triangle, a diamond or a cross.
fn marker_shape(index: usize) -> Vec<(i32, i32)> {
    let s = f64::from(SCALE);
    let polar = |r: f64, turns: &[f64]| -> Vec<(i32, i32)> {
        turns
            .iter()
            .map(|t| {
                let a = t * std::f64::consts::TAU;
                ((r * s * a.sin()).round() as i32, (-r * s * a.cos()).round() as i32)
            })
            .collect()
    };
    match index % MARKERS {
        0 => polar(4.5, &(0..24).map(|i| f64::from(i) / 24.0).collect::<Vec<_>>()),
        1 => polar(5.5, &[0.125, 0.375, 0.625, 0.875]),
        2 => polar(6.5, &[0.0, 1.0 / 3.0, 2.0 / 3.0]).into_iter().map(|(x, y)| (x, y + pxi(1))).collect(),
        3 => polar(6.0, &[0.0, 0.25, 0.5, 0.75]),
        // An "x": a plus sign with arms 2.4 px wide and 11 px long, turned by 45 degrees.
        _ => {
            let (a, b) = (1.2 * s, 5.5 * s);
            let quarter = [(a, b), (a, a), (b, a), (b, -a), (a, -a), (a, -b)];
            let plus = quarter.iter().copied().chain(quarter.iter().map(|&(x, y)| (-x, -y)));
            let r = std::f64::consts::FRAC_1_SQRT_2;
            plus.map(|(x, y)| (((x - y) * r).round() as i32, ((x + y) * r).round() as i32)).collect()
        }
    }
}

/// A legend in columns of at most `rows` entries: labels (cut to `LEGEND_LABEL_W`), each after
/// a short line with its marker (a series of a line chart) or, for `None`, a filled square (a
/// bar's colour).
struct Legend {
    entries: Vec<(String, RGBColor, Option<usize>)>,
    rows: usize,
    /// The legend's width in final pixels.
    width: u32,
}

/// Width of the key drawn before each legend label, in final-image pixels.
const KEY_W: u32 = 30;

impl Legend {
    /// Lays out `entries` in columns at most `height` final pixels tall. Needs the font
    /// registered (see `canvas::ensure_font`).
    fn new(entries: impl IntoIterator<Item = (String, RGBColor, Option<usize>)>, height: u32) -> Legend {
        let style = font(LEGEND_SIZE, TEXT);
        let entries: Vec<_> =
            entries.into_iter().map(|(l, c, m)| (fit(&l, &style, px(LEGEND_LABEL_W)), c, m)).collect();
        // plotters spaces legend rows 1.25 times the font size apart.
        let rows = ((f64::from(height) - 20.0) / (LEGEND_SIZE * 1.25)).max(1.0) as usize;
        let widest = entries.iter().map(|e| text_width(&e.0, &style)).max().unwrap_or(0);
        let column_w = widest.div_ceil(SCALE) + KEY_W + 40;
        Legend { rows, width: entries.len().div_ceil(rows) as u32 * column_w + 8, entries }
    }

    /// Draws the legend in `area` with plotters' series labels, one chart per column.
    fn draw(&self, area: &Area) -> DrawResult {
        let (w, s, lift) = (pxi(KEY_W as i32 - 6), pxi(7), centring(&font(LEGEND_SIZE, TEXT)) - pxi(1));
        let columns = area.split_evenly((1, self.entries.len().div_ceil(self.rows).max(1)));
        for (entries, column) in self.entries.chunks(self.rows).zip(columns) {
            let mut chart = ChartBuilder::on(&column).build_cartesian_2d(0.0..1.0, 0.0..1.0)?;
            for &(ref label, color, marker) in entries {
                let series = chart.draw_series(std::iter::empty::<PathElement<(f64, f64)>>())?;
                series.label(label).legend(move |(x, y)| {
                    let line = if marker.is_some() { vec![(0, 0), (w, 0)] } else { vec![] };
                    let shape = marker.map_or_else(|| vec![(-s, -s), (s, -s), (s, s), (-s, s)], marker_shape);
                    EmptyElement::at((x, y - lift))
                        + PathElement::new(line, color.stroke_width(px(2)))
                        + Polygon::new(
                            shape.into_iter().map(|(a, b)| (a + w / 2, b)).collect::<Vec<_>>(),
                            color.filled(),
                        )
                });
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .legend_area_size(px(KEY_W))
                .margin(px(6))
                .label_font(font(LEGEND_SIZE, TEXT))
                .draw()?;
        }
        Ok(())
    }
}
