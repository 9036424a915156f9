//! The cost/benefit chart: dev accuracy against training time, one labelled point per
//! configuration.

use super::*;
use crate::error::Result;
use plotters::coord::ranged1d::AsRangedCoord;
use std::path::Path;

const WIDTH: u32 = 1100;
const HEIGHT: u32 = 650;

/// One configuration in [`accuracy_vs_time`].
#[derive(Debug, Clone, PartialEq)]
pub struct CostPoint {
    /// The configuration's name, printed next to its point.
    pub label: String,
    /// Training time of one run in seconds, mean over seeds.
    pub seconds: f64,
    /// Dev accuracy, mean over seeds.
    pub accuracy: f64,
    /// Standard deviation of the dev accuracy over seeds, drawn as an error bar; 0 or NaN for
    /// none.
    pub accuracy_std: f64,
}

/// Dev accuracy (`y_label` says which: a task's, or the mean over tasks) against training
/// time: one point per configuration, labelled with its name, with the accuracy's standard
/// deviation as an error bar; a dashed line links the configurations no faster one beats (the
/// Pareto front). The time axis is logarithmic, with ticks at round durations (1 s, 10 s,
/// 1 min, ...), when the times are positive and span more than a factor of 10; linear in
/// seconds otherwise. Points with a non-finite time or accuracy are left out; with none left
/// the chart says "no data".
pub fn accuracy_vs_time(path: &Path, title: &str, y_label: &str, points: &[CostPoint]) -> Result<()> {
    let shown: Vec<&CostPoint> = points.iter().filter(|p| p.seconds.is_finite() && p.accuracy.is_finite()).collect();
    canvas::render(path, (WIDTH, HEIGHT), |root| {
        let body = draw_title(root, title)?;
        if shown.is_empty() {
            return draw_no_data(&body.margin(px(4), px(30), px(84), px(30)));
        }
        draw_points(&body, y_label, &shown)
    })
}

/// Dev accuracy against another measure of each configuration on a linear x axis (`x_desc`
/// says which; the points' `seconds` field holds it): one labelled point per configuration with
/// its error bar, as [`accuracy_vs_time`] draws them, without a Pareto line. Used for accuracy
/// against what the embeddings kept (STS-B Spearman).
pub fn accuracy_vs_measure(path: &Path, title: &str, x_desc: &str, y_label: &str, points: &[CostPoint]) -> Result<()> {
    let shown: Vec<&CostPoint> = points.iter().filter(|p| p.seconds.is_finite() && p.accuracy.is_finite()).collect();
    canvas::render(path, (WIDTH, HEIGHT), |root| {
        let body = draw_title(root, title)?;
        if shown.is_empty() {
            return draw_no_data(&body.margin(px(4), px(30), px(84), px(30)));
        }
        let (lo, hi) = shown.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| (lo.min(p.seconds), hi.max(p.seconds)));
        let (lo, hi) = padded(lo, hi, 0.12, 0.0);
        draw_on(&body, y_label, &shown, lo..hi, 10, &tick_format(lo, hi, 10), x_desc, false)
    })
}

/// Ticks for a logarithmic time axis from `lo` to `hi` seconds, with their labels: 1, 2, 5,
/// 10, 20 and 30 seconds, minutes and hours (only the 1s and 10s if that makes more than 9), or
/// powers of ten seconds when fewer than 2 of those fit.
pub(super) fn duration_ticks(lo: f64, hi: f64) -> Vec<(f64, String)> {
    let round = |major_only: bool| -> Vec<(f64, String)> {
        let multiples =
            [1.0, 2.0, 5.0, 10.0, 20.0, 30.0].into_iter().filter(|m| !major_only || [1.0, 10.0].contains(m));
        let all = [(1.0, "s"), (60.0, "min"), (3600.0, "h")]
            .into_iter()
            .flat_map(|(unit, name)| multiples.clone().map(move |m| (m * unit, format!("{m} {name}"))));
        all.filter(|(s, _)| (lo..=hi).contains(s)).collect()
    };
    match round(false).len() {
        0..=1 => (lo.log10().ceil() as i32..=hi.log10().floor() as i32)
            .map(|e| (10f64.powi(e), format!("{} s", 10f64.powi(e))))
            .collect(),
        2..=9 => round(false),
        _ => round(true),
    }
}

/// The rectangle (x0, y0, x1, y1) a label takes, in canvas pixels.
type Rect = (i32, i32, i32, i32);

fn overlap(a: Rect, b: Rect) -> i64 {
    let w = (a.2.min(b.2) - a.0.max(b.0)).max(0);
    let h = (a.3.min(b.3) - a.1.max(b.1)).max(0);
    i64::from(w) * i64::from(h)
}

/// Where to put a `(w, h)` label for the point at `at`: the first place around it, ring after
/// ring outwards, that stays inside `bounds` and overlaps nothing in `taken` (else the place
/// that overlaps least). Returns the rectangle and its ring (0: next to the point).
pub(super) fn place_label(at: (i32, i32), (w, h): (i32, i32), bounds: Rect, taken: &[Rect]) -> (Rect, usize) {
    let (x, y) = at;
    let mut best = ((0, 0, 0, 0), 0, i64::MAX);
    for ring in 0..16 {
        let g = pxi(9) + ring as i32 * (h + pxi(2));
        let d = g * 7 / 10;
        for (x0, y0) in [
            (x + g, y - h / 2),
            (x - g - w, y - h / 2),
            (x - w / 2, y - g - h),
            (x - w / 2, y + g),
            (x + d, y - d - h),
            (x + d, y + d),
            (x - d - w, y - d - h),
            (x - d - w, y + d),
        ] {
            let rect = (x0, y0, x0 + w, y0 + h);
            let outside = rect.0 < bounds.0 || rect.1 < bounds.1 || rect.2 > bounds.2 || rect.3 > bounds.3;
            let cost = taken.iter().map(|t| overlap(rect, *t)).sum::<i64>() + if outside { i64::MAX / 4 } else { 0 };
            if cost == 0 {
                return (rect, ring);
            }
            if cost < best.2 {
                best = (rect, ring, cost);
            }
        }
    }
    (best.0, best.1)
}

/// The error bar's half height: the standard deviation, 0 if there is none.
fn err(p: &CostPoint) -> f64 {
    if p.accuracy_std.is_finite() {
        p.accuracy_std.abs()
    } else {
        0.0
    }
}

/// Draws `points` on a logarithmic time axis when their times span more than a factor of 10,
/// else on a linear one.
fn draw_points(area: &Area, y_label: &str, points: &[&CostPoint]) -> DrawResult {
    let (lo, hi) =
        points.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| (lo.min(p.seconds), hi.max(p.seconds)));
    // Room on both sides for labels: a factor of 1.6 on a logarithmic axis, 8% on a linear one.
    if lo > 0.0 && hi > 10.0 * lo {
        let (lo, hi) = (lo / 1.6, hi * 1.6);
        let ticks = duration_ticks(lo, hi);
        let label =
            |s: &f64| ticks.iter().find(|t| (t.0 / s - 1.0).abs() < 1e-9).map_or(String::new(), |t| t.1.clone());
        let x = (lo..hi).log_scale().with_key_points(ticks.iter().map(|t| t.0).collect());
        draw_on(area, y_label, points, x, 0, &label, "training time per run (log scale)", true)
    } else {
        let (lo, hi) = padded(lo, hi, 0.08, 0.0);
        draw_on(area, y_label, points, lo..hi, 10, &tick_format(lo, hi, 10), "training time per run (seconds)", true)
    }
}

#[allow(clippy::too_many_arguments)]
fn draw_on<X>(
    area: &Area,
    y_label: &str,
    points: &[&CostPoint],
    x_spec: X,
    x_ticks: usize,
    x_fmt: &dyn Fn(&f64) -> String,
    x_desc: &str,
    pareto: bool,
) -> DrawResult
where
    X: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
{
    let (y_min, y_max) = points.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
        (lo.min(p.accuracy - err(p)), hi.max(p.accuracy + err(p)))
    });
    let (y_lo, y_hi) = padded(y_min, y_max, 0.08, 0.0);
    let y_ticks = 8;
    let y_fmt = tick_format(y_lo, y_hi, y_ticks);
    let mut chart = ChartBuilder::on(area)
        .margin_top(px(8))
        .margin_left(px(12))
        .margin_right(px(30))
        .margin_bottom(px(4))
        .x_label_area_size(px(56))
        .y_label_area_size(y_area(y_lo, y_hi, y_ticks))
        .build_cartesian_2d(x_spec, y_lo..y_hi)?;
    let (xs, ys) = chart.plotting_area().get_pixel_range();
    styled_mesh(&mut chart)
        .x_labels(x_ticks)
        .y_labels(y_ticks)
        .x_label_formatter(x_fmt)
        .y_label_formatter(&y_fmt)
        .x_desc(x_desc)
        .y_desc(fit(y_label, &font(DESC_SIZE, TEXT), (ys.end - ys.start) as u32))
        .draw()?;
    // The Pareto front, from the fastest configuration to the most accurate, with its legend
    // (lower right, where slow and inaccurate configurations would be).
    let mut by_time = points.to_vec();
    by_time.sort_by(|a, b| a.seconds.total_cmp(&b.seconds).then(b.accuracy.total_cmp(&a.accuracy)));
    let mut front: Vec<(f64, f64)> = Vec::new();
    for p in by_time {
        if front.last().map_or(true, |&(_, best)| p.accuracy > best) {
            front.push((p.seconds, p.accuracy));
        }
    }
    let legend_style = font(LEGEND_SIZE, TEXT);
    let mut taken: Vec<Rect> = Vec::new();
    if pareto && front.len() > 1 {
        let dashes = MUTED.stroke_width(px(2));
        let text = "Pareto front: nothing faster is as accurate";
        chart.draw_series(DashedLineSeries::new(front, pxi(8), pxi(6), dashes))?.label(text).legend(move |(x, y)| {
            let dash = |from: i32| PathElement::new(vec![(pxi(from), 0), (pxi(from + 6), 0)], dashes);
            EmptyElement::at((x, y - centring(&font(LEGEND_SIZE, TEXT)) + pxi(1))) + dash(0) + dash(9) + dash(18)
        });
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .legend_area_size(px(KEY_W))
            .margin(px(6))
            .label_font(legend_style.clone())
            .background_style(WHITE.mix(0.85))
            .border_style(GRID)
            .draw()?;
        let (lw, lh) = (text_width(text, &legend_style) as i32 + pxi(KEY_W as i32 + 12), pxi(LEGEND_SIZE as i32 + 12));
        taken.push((xs.end - lw - pxi(5), ys.end - lh - pxi(5), xs.end, ys.end));
    }

    // Labels go where they cover no marker, error bar, legend or other label.
    let centres: Vec<(i32, i32)> = points.iter().map(|p| chart.backend_coord(&(p.seconds, p.accuracy))).collect();
    for (p, &(x, y)) in points.iter().zip(&centres) {
        let r = pxi(7);
        taken.push((x - r, y - r, x + r, y + r));
        let e = err(p);
        if e > 0.0 {
            let top = chart.backend_coord(&(p.seconds, p.accuracy + e)).1;
            taken.push((x - pxi(5), top, x + pxi(5), 2 * y - top));
        }
    }
    let size = legend_style.font.get_size();
    let label_style = legend_style.pos(Pos::new(HPos::Left, VPos::Top));
    let mut labels = Vec::new();
    for (p, &at) in points.iter().zip(&centres) {
        // plotters letters from 0.13 of the size above the anchor to 0.7 below it.
        let dims = (text_width(&p.label, &label_style) as i32, (0.85 * size).round() as i32);
        let (rect, ring) = place_label(at, dims, (xs.start, ys.start, xs.end, ys.end), &taken);
        taken.push(rect);
        labels.push((rect, ring));
    }

    let plotting = chart.plotting_area();
    for (i, p) in points.iter().enumerate() {
        let (x, y, e) = (p.seconds, p.accuracy, err(p));
        if e > 0.0 {
            let style = color(i).stroke_width(px(2));
            let cap = || PathElement::new(vec![(-pxi(5), 0), (pxi(5), 0)], style);
            plotting.draw(&PathElement::new(vec![(x, y - e), (x, y + e)], style))?;
            plotting.draw(&(EmptyElement::at((x, y - e)) + cap()))?;
            plotting.draw(&(EmptyElement::at((x, y + e)) + cap()))?;
        }
        plotting.draw(&(EmptyElement::at((x, y)) + Polygon::new(marker_shape(i), color(i).filled())))?;
    }
    // Each label on a white box (over the Pareto line), drawn relative to its point, after the
    // lines to the points whose labels had to move away.
    for ((p, &at), &(rect, _)) in points.iter().zip(&centres).zip(&labels).filter(|(_, l)| l.1 > 0) {
        let nearest = (at.0.clamp(rect.0, rect.2) - at.0, at.1.clamp(rect.1, rect.3) - at.1);
        let line = PathElement::new(vec![(0, 0), nearest], MUTED.stroke_width(px(1)));
        plotting.draw(&(EmptyElement::at((p.seconds, p.accuracy)) + line))?;
    }
    for ((p, &at), &(rect, _)) in points.iter().zip(&centres).zip(&labels) {
        let rel = |x: i32, y: i32| (x - at.0, y - at.1);
        let corners = [rel(rect.0 - pxi(2), rect.1 - pxi(1)), rel(rect.2 + pxi(2), rect.3 + pxi(1))];
        let text_at = rel(rect.0, rect.1 + (0.13 * size).round() as i32);
        plotting.draw(
            &(EmptyElement::at((p.seconds, p.accuracy))
                + Rectangle::new(corners, WHITE.mix(0.85).filled())
                + Text::new(p.label.clone(), text_at, label_style.clone())),
        )?;
    }
    Ok(())
}
