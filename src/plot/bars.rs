//! Grouped bar charts with error bars.

use super::*;
use crate::error::{invalid, Result};
use std::path::Path;

/// Width of the plot; the legend's column comes on top of it.
const PLOT_W: u32 = 1400;
const HEIGHT: u32 = 600;
/// A configuration name takes at most this many lines under its group.
const NAME_LINES: usize = 4;
const ERROR_BAR: RGBColor = RGBColor(40, 40, 40);
/// Characters a configuration name may be broken after.
const BREAK_AFTER: &str = ":-_/,=.";

/// A grouped bar chart with error bars (mean ± std): one group per configuration along x, one
/// bar per task (`series_names`, e.g. ["Task A (TREC-6)", "Task B (SST-3)", "Task B on
/// tweets"]) with a legend, y axis label and title. Long configuration names are wrapped (after
/// `:`, `-`, `_`, `/`, `,`, `=`, `.`, at spaces, or anywhere if need be) to their group's width;
/// each bar's mean is printed above it with 3 decimals (upright when it fits the bar's width,
/// else reading upwards); a missing value (NaN mean) shows "n/a" instead of a bar. The y axis
/// starts at 0.
pub fn bar_groups(path: &Path, title: &str, y_label: &str, series_names: &[String], groups: &[BarGroup]) -> Result<()> {
    if series_names.is_empty() {
        return Err(invalid(format!("{}: a bar chart needs at least one series", path.display())));
    }
    if let Some(g) = groups.iter().find(|g| g.values.len() != series_names.len()) {
        return Err(invalid(format!(
            "{}: bar group {:?} has {} values for {} series",
            path.display(),
            g.label,
            g.values.len(),
            series_names.len()
        )));
    }
    canvas::ensure_font(path)?; // the legend's width is measured in the font
    let entries = series_names.iter().enumerate().map(|(i, name)| (name.clone(), color(i), None));
    let legend = Legend::new(entries, HEIGHT - TITLE_H);
    canvas::render(path, (PLOT_W + legend.width, HEIGHT), |root| {
        let body = draw_title(root, title)?;
        let (plot, legend_area) = body.split_horizontally(px(PLOT_W));
        legend.draw(&legend_area.margin(px(2), 0, 0, 0))?;
        draw_bars(&plot, y_label, series_names.len(), groups)
    })
}

/// Splits `text` into lines no wider than `max_w` canvas pixels in `style`: into as few lines
/// as breaking at spaces and after the separators in `BREAK_AFTER` (which may overhang) allows,
/// at `:` rather than `-` if that takes no more lines, inside a piece only when it alone is too
/// wide, and as evenly as that many lines allow ("freeze:" / "layers:3", not "freeze:layers:" /
/// "3").
pub(super) fn wrap(text: &str, style: &TextStyle, max_w: u32) -> Vec<String> {
    let fewest = wrap_greedily(text, style, max_w, BREAK_AFTER);
    let preferred = [":", ":/,=", BREAK_AFTER].into_iter().find(|breaks| {
        let (lines, cut) = wrap_greedily(text, style, max_w, breaks);
        lines.len() <= fewest.0.len() && (!cut || fewest.1)
    });
    let breaks = preferred.unwrap_or(BREAK_AFTER);
    // The narrowest width that needs no more lines (and no cut inside a piece that the full
    // width did not need) evens the lines out.
    let (mut lo, mut hi) = (0, max_w);
    while lo < hi {
        let mid = (lo + hi) / 2;
        let (lines, cut) = wrap_greedily(text, style, mid, breaks);
        if lines.len() <= fewest.0.len() && (fewest.1 || !cut) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    wrap_greedily(text, style, hi, breaks).0
}

/// Fills lines one after the other, breaking at spaces and after `breaks`; also says whether a
/// piece had to be cut.
fn wrap_greedily(text: &str, style: &TextStyle, max_w: u32, breaks: &str) -> (Vec<String>, bool) {
    let shown = |s: &str| {
        let s = s.trim_end();
        text_width(s.strip_suffix(|c| BREAK_AFTER.contains(c)).unwrap_or(s), style)
    };
    let mut pieces = vec![String::new()];
    for c in text.chars() {
        pieces.last_mut().expect("never empty").push(c);
        if c == ' ' || breaks.contains(c) {
            pieces.push(String::new());
        }
    }
    let (mut lines, mut line, mut cut) = (Vec::new(), String::new(), false);
    for piece in pieces {
        let joined = format!("{line}{piece}");
        if line.trim().is_empty() || shown(&joined) <= max_w {
            line = joined;
        } else {
            lines.push(std::mem::replace(&mut line, piece).trim().to_string());
        }
        while shown(&line) > max_w && line.chars().count() > 1 {
            let chars: Vec<char> = line.chars().collect();
            let prefix = |n: usize| chars[..n].iter().collect::<String>();
            let n = (1..chars.len()).rev().find(|&n| shown(&prefix(n)) <= max_w).unwrap_or(1);
            lines.push(prefix(n).trim().to_string());
            line = chars[n..].iter().collect();
            cut = true;
        }
    }
    if !line.trim().is_empty() {
        lines.push(line.trim().to_string());
    }
    (lines, cut)
}

/// Where the bar of series `s` (of `k`) in group `g` starts and ends along x.
fn bar_span(g: usize, s: usize, k: usize) -> (f64, f64) {
    let width = 0.8 / k as f64;
    let x0 = g as f64 - 0.4 + s as f64 * width;
    (x0 + width * 0.06, x0 + width * 0.94)
}

fn draw_bars(area: &Area, y_label: &str, k: usize, groups: &[BarGroup]) -> DrawResult {
    let present: Vec<(f64, f64)> = groups
        .iter()
        .flat_map(|g| &g.values)
        .filter(|(m, _)| m.is_finite())
        .map(|&(m, sd)| if sd.is_finite() { (m - sd.abs(), m + sd.abs()) } else { (m, m) })
        .collect();
    if present.is_empty() {
        return draw_no_data(&area.margin(px(4), px(30), px(84), px(30)));
    }
    let n = groups.len();
    let (plot_w, plot_h) = area.dim_in_pixel();
    let lo = present.iter().map(|p| p.0).fold(0.0, f64::min);
    let hi = present.iter().map(|p| p.1).fold(0.0, f64::max);

    // Layout: the y label area holds the widest tick label (of a range with room for the value
    // labels) and the description; the x label area the most lines a configuration name takes.
    let (margin_l, margin_r, margin_top) = (px(12), px(24), px(8));
    let rough = (hi - lo).max(1e-9) * 0.3;
    let y_w = y_area(if lo < 0.0 { lo - rough } else { 0.0 }, hi + rough, 8);
    let group_px = plot_w.saturating_sub(margin_l + margin_r + y_w) / n as u32;
    let name_style = font(TICK_SIZE, TEXT);
    let name_w = group_px.saturating_sub(px(8)).max(px(20));
    let names: Vec<Vec<String>> = groups
        .iter()
        .map(|g| {
            let mut lines = wrap(&g.label, &name_style, name_w);
            if lines.len() > NAME_LINES {
                let rest = lines[NAME_LINES - 1..].concat();
                lines.truncate(NAME_LINES - 1);
                lines.push(fit(&rest, &name_style, name_w));
            }
            lines
        })
        .collect();
    let line_h = (TICK_SIZE * 1.2 * f64::from(SCALE)).round() as i32;
    let x_area = px(16) + names.iter().map(Vec::len).max().unwrap_or(1) as u32 * line_h as u32;

    // Room above the bars for the value labels: upright when they fit the bar's width.
    let value_style = font(VALUE_SIZE, TEXT);
    let bar_px = f64::from(group_px) * 0.8 / k as f64 * 0.88;
    let upright = |text: &str| f64::from(text_width(text, &value_style) + px(2)) <= bar_px;
    let value_w = f64::from(text_width("0.000", &value_style));
    let label_px = if upright("0.000") { value_style.font.get_size() } else { value_w } + f64::from(px(10));
    let inner_h = f64::from(plot_h.saturating_sub(x_area + margin_top));
    let head = (label_px / (inner_h - label_px).max(1.0)).max(0.05);
    let span = (hi - lo).max(1e-9);
    let y_hi = if hi > 0.0 { hi + span * head } else { span * 0.05 };
    let y_lo = if lo < 0.0 { lo - span * head } else { 0.0 };

    let y_w = y_w.max(y_area(y_lo, y_hi, 8));
    let mut chart = ChartBuilder::on(area)
        .margin_top(margin_top)
        .margin_left(margin_l)
        .margin_right(margin_r)
        .x_label_area_size(x_area)
        .y_label_area_size(y_w)
        .build_cartesian_2d(-0.5..n as f64 - 0.5, y_lo..y_hi)?;
    let y_fmt = tick_format(y_lo, y_hi, 8);
    let (_, ys) = chart.plotting_area().get_pixel_range();
    styled_mesh(&mut chart)
        .disable_x_mesh()
        .x_labels(0)
        .y_labels(8)
        .y_label_formatter(&y_fmt)
        .y_desc(fit(y_label, &font(DESC_SIZE, TEXT), (ys.end - ys.start) as u32))
        .draw()?;
    let plotting = chart.plotting_area();

    // Faint separators between groups.
    for g in 1..n {
        let x = g as f64 - 0.5;
        plotting.draw(&PathElement::new(vec![(x, y_lo), (x, y_hi)], RGBColor(238, 238, 238).stroke_width(px(1))))?;
    }
    // A value label just beyond `(x, y)`: above it when `up`, below it otherwise.
    let value = |text: &str, color: RGBColor, x: f64, y: f64, up: bool| -> DrawResult {
        let style = font(VALUE_SIZE, color);
        let (gap, across) = (pxi(5), centring(&style));
        let (style, offset) = match (upright(text), up) {
            (true, true) => (style.pos(Pos::new(HPos::Center, VPos::Bottom)), (0, across - gap)),
            (true, false) => (style.pos(Pos::new(HPos::Center, VPos::Top)), (0, gap)),
            (false, up) => (
                style
                    .transform(FontTransform::Rotate270)
                    .pos(Pos::new(if up { HPos::Left } else { HPos::Right }, VPos::Center)),
                (across, if up { -gap } else { gap }),
            ),
        };
        plotting.draw(&(EmptyElement::at((x, y)) + Text::new(text.to_string(), offset, style)))?;
        Ok(())
    };
    for (g, group) in groups.iter().enumerate() {
        for (s, &(mean, sd)) in group.values.iter().enumerate() {
            let (x0, x1) = bar_span(g, s, k);
            let xc = (x0 + x1) / 2.0;
            if !mean.is_finite() {
                value("n/a", MUTED, xc, 0.0, true)?;
                continue;
            }
            plotting.draw(&Rectangle::new([(x0, 0.0), (x1, mean)], color(s).filled()))?;
            let sd = if sd.is_finite() { sd.abs() } else { 0.0 };
            if sd > 0.0 {
                let cap = (x1 - x0) * 0.18;
                for path in [
                    vec![(xc, mean - sd), (xc, mean + sd)],
                    vec![(xc - cap, mean + sd), (xc + cap, mean + sd)],
                    vec![(xc - cap, mean - sd), (xc + cap, mean - sd)],
                ] {
                    plotting.draw(&PathElement::new(path, ERROR_BAR.stroke_width(px(2))))?;
                }
            }
            let text = format!("{mean:.3}");
            if mean >= 0.0 {
                value(&text, TEXT, xc, mean + sd, true)?;
            } else {
                value(&text, TEXT, xc, mean - sd, false)?;
            }
        }
    }
    // The configuration names, centred under their groups.
    let name_style = name_style.pos(Pos::new(HPos::Center, VPos::Top));
    for (g, lines) in names.iter().enumerate() {
        for (i, line) in lines.iter().enumerate() {
            let below = (0, pxi(10) + i as i32 * line_h);
            plotting
                .draw(&(EmptyElement::at((g as f64, y_lo)) + Text::new(line.clone(), below, name_style.clone())))?;
        }
    }
    Ok(())
}
