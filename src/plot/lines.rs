//! Line charts: panels side by side, one line per series, one legend for all panels.

use super::*;
use crate::error::{invalid, Result};
use std::path::Path;

const PANEL_W: u32 = 700;
const HEIGHT: u32 = 500;
/// Room above each panel's plot for its caption.
const CAPTION_H: u32 = 40;

/// A line chart with one coloured line (with point markers) per series, a legend, labelled axes,
/// and a title. Several panels side by side in one PNG: one per (panel title, series list),
/// sharing x/y axis labels. Ticks on x are whole numbers when every x is (epochs); each panel's
/// y range is its finite data with a 5% margin, and a panel without finite points shows
/// "no data". A series keeps its colour and marker across panels (they are assigned by label),
/// and one legend in a right-hand column lists every label.
pub fn line_panels(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    panels: &[(String, Vec<Series>)],
) -> Result<()> {
    if panels.is_empty() {
        return Err(invalid(format!("{}: a line chart needs at least one panel", path.display())));
    }
    let mut labels: Vec<&str> = Vec::new();
    for s in panels.iter().flat_map(|(_, series)| series) {
        if !labels.contains(&s.label.as_str()) {
            labels.push(&s.label);
        }
    }
    canvas::ensure_font(path)?; // the legend's width is measured in the font
    let entries = labels.iter().enumerate().map(|(i, l)| (l.to_string(), color(i), Some(i)));
    let legend = Legend::new(entries, HEIGHT - TITLE_H - CAPTION_H);
    let plots_w = PANEL_W * panels.len() as u32;
    canvas::render(path, (plots_w + legend.width, HEIGHT), |root| {
        let body = draw_title(root, title)?;
        let (plots, legend_area) = body.split_horizontally(px(plots_w));
        for (cell, (caption, series)) in plots.split_evenly((1, panels.len())).iter().zip(panels) {
            draw_panel(cell, caption, x_label, y_label, series, &labels)?;
        }
        legend.draw(&legend_area.margin(px(CAPTION_H - 6), 0, 0, 0))
    })
}

/// The finite points of `points`, split into runs at every non-finite one.
fn finite_runs(points: &[(f64, f64)]) -> Vec<Vec<(f64, f64)>> {
    let mut runs = vec![Vec::new()];
    for &(x, y) in points {
        if x.is_finite() && y.is_finite() {
            runs.last_mut().expect("runs is never empty").push((x, y));
        } else if !runs.last().expect("runs is never empty").is_empty() {
            runs.push(Vec::new());
        }
    }
    runs.retain(|r| !r.is_empty());
    runs
}

fn draw_panel(
    cell: &Area,
    caption: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    labels: &[&str],
) -> DrawResult {
    let (cell_w, _) = cell.dim_in_pixel();
    let (head, body) = cell.split_vertically(px(CAPTION_H));
    let style = font(CAPTION_SIZE, TEXT);
    let finite: Vec<(f64, f64)> =
        series.iter().flat_map(|s| &s.points).copied().filter(|(x, y)| x.is_finite() && y.is_finite()).collect();
    if finite.is_empty() {
        let caption = fit(caption, &style, cell_w - px(30));
        centred(&head, &caption, &style, (cell_w as i32 / 2, pxi(CAPTION_H as i32 / 2 + 2)))?;
        return draw_no_data(&body.margin(px(4), px(30), px(84), px(24)));
    }
    let range = |pick: fn(&(f64, f64)) -> f64| {
        finite.iter().map(pick).fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)))
    };
    let ((x_min, x_max), (y_min, y_max)) = (range(|p| p.0), range(|p| p.1));
    let integers = finite.iter().all(|(x, _)| x.fract() == 0.0 && x.abs() < 1e15);
    let (x_lo, x_hi) = padded(x_min, x_max, 0.04, if integers { 0.25 } else { 0.0 });
    let (y_lo, y_hi) = padded(y_min, y_max, 0.05, 0.0);

    let (x_area, margin_r) = (px(56), px(26));
    let y_ticks = 8;
    let y_w = y_area(y_lo, y_hi, y_ticks);
    // Whole-number ticks for whole-number x: plotters' steps are 1, 2 or 5 times a power of ten,
    // so allowing no more ticks than there are whole numbers in the range keeps them whole.
    let whole = (x_hi.floor() - x_lo.ceil()) as usize + 1;
    let x_ticks = if integers { whole.min(10) } else { 10 };
    let (x_fmt, y_fmt) = (tick_format(x_lo, x_hi, x_ticks), tick_format(y_lo, y_hi, y_ticks));

    let mut chart = ChartBuilder::on(&body)
        .margin_left(px(12))
        .margin_right(margin_r)
        .margin_bottom(px(4))
        .x_label_area_size(x_area)
        .y_label_area_size(y_w)
        .build_cartesian_2d(x_lo..x_hi, y_lo..y_hi)?;
    let (xs, ys) = chart.plotting_area().get_pixel_range();
    let desc = font(DESC_SIZE, TEXT);
    styled_mesh(&mut chart)
        .x_labels(x_ticks)
        .y_labels(y_ticks)
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .x_desc(fit(x_label, &desc, (xs.end - xs.start) as u32))
        .y_desc(fit(y_label, &desc, (ys.end - ys.start) as u32))
        .draw()?;

    // The caption is centred on the plot, so it may use twice the room on its nearer side.
    let centre = (xs.start + xs.end) / 2 - cell.get_base_pixel().0;
    let room = 2 * centre.min(cell_w as i32 - centre) - pxi(16);
    let caption = fit(caption, &style, room.max(0) as u32);
    centred(&head, &caption, &style, (centre, pxi(CAPTION_H as i32 / 2 + 2)))?;

    for s in series {
        let index = labels.iter().position(|l| *l == s.label).unwrap_or(0);
        let color = color(index);
        for run in finite_runs(&s.points) {
            if run.len() > 1 {
                chart.draw_series(LineSeries::new(run.iter().copied(), color.stroke_width(px(2))))?;
            }
            chart.draw_series(
                run.iter().map(|&p| EmptyElement::at(p) + Polygon::new(marker_shape(index), color.filled())),
            )?;
        }
    }
    Ok(())
}
