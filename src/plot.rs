//! Owns the experiment runner's charts: PNG line charts (panels side by side, one line per run,
//! a shared legend) and grouped bar charts with error bars, drawn with plotters; and the
//! TrueType font they are lettered in (found on disk, registered once per process, and laid out
//! glyph by glyph from its own metrics). Every chart is written atomically: readers see the old
//! PNG or the new one, never a part.

use crate::error::{invalid, Error, Result};
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::register_font;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// One line of a line chart: a legend label and (x, y) points.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// One bar group entry: a configuration name and, per task, (mean, standard deviation); NaN
/// mean = missing (no bar).
#[derive(Debug, Clone, PartialEq)]
pub struct BarGroup {
    pub label: String,
    pub values: Vec<(f64, f64)>,
}

// ---------------------------------------------------------------------------------------------
// Font

/// Environment variable naming a TrueType font file to letter charts with.
const FONT_ENV: &str = "MTT_PLOT_FONT";
/// Where Debian/Ubuntu, Arch and Fedora put DejaVu Sans.
const DEFAULT_FONTS: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];
/// The family name the font is registered under, and that every text style asks for.
const FAMILY: &str = "sans-serif";

/// The first existing file of `env` (the value of `MTT_PLOT_FONT`, if set and not empty) and
/// `defaults`; the error lists every path tried.
fn find_font(env: Option<&Path>, defaults: &[&str]) -> Result<PathBuf> {
    let env = env.filter(|p| !p.as_os_str().is_empty());
    let candidates: Vec<PathBuf> =
        env.map(Path::to_path_buf).into_iter().chain(defaults.iter().map(PathBuf::from)).collect();
    if let Some(found) = candidates.iter().find(|p| p.is_file()) {
        return Ok(found.clone());
    }
    let tried: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
    let unset = if env.is_none() { format!(" ({FONT_ENV} is not set)") } else { String::new() };
    Err(invalid(format!(
        "no font to letter charts with: tried {}{unset}, none exists. Install Debian's \
         fonts-dejavu-core (apt-get install fonts-dejavu-core) or set {FONT_ENV} to a .ttf file",
        tried.join(", ")
    )))
}

/// Reads the font `find_font` picks and registers it as the "sans-serif" family. Returns its
/// glyph metrics, or `None` if its tables cannot be read (text then uses plotters' own layout).
fn load_font(env: Option<&Path>) -> Result<Option<Glyphs>> {
    let path = find_font(env, &DEFAULT_FONTS)?;
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    // plotters keeps fonts for the life of the process; this runs at most once per process.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    register_font(FAMILY, FontStyle::Normal, bytes).map_err(|_| {
        invalid(format!("{}: not a TrueType/OpenType font (set {FONT_ENV} to a .ttf file)", path.display()))
    })?;
    Ok(Glyphs::parse(bytes))
}

/// The outcome of registering the font, decided once per process.
static FONT: OnceLock<std::result::Result<Option<Glyphs>, String>> = OnceLock::new();

/// Registers the charts' font once per process; later calls return the first call's outcome.
fn ensure_font() -> Result<()> {
    FONT.get_or_init(|| {
        let env = std::env::var_os(FONT_ENV).map(PathBuf::from);
        load_font(env.as_deref()).map_err(|e| e.to_string())
    })
    .as_ref()
    .map(|_| ())
    .map_err(|e| invalid(e.clone()))
}

/// The registered font's metrics, once `ensure_font` has succeeded and the tables were readable.
fn glyphs() -> Option<&'static Glyphs> {
    FONT.get().and_then(|r| r.as_ref().ok()).and_then(Option::as_ref)
}

/// Horizontal metrics read from a TrueType font's `cmap`, `hhea` and `hmtx` tables.
///
/// plotters' ab_glyph renderer places each glyph's outline at the pen position without its left
/// side bearing and truncates the pen to whole pixels, which spaces letters visibly unevenly
/// ("baselin e"). Text is therefore drawn one glyph at a time, each at its own bearing.
struct Glyphs {
    data: &'static [u8],
    /// Offset and format (4 or 12) of the Unicode `cmap` subtable.
    cmap: (usize, u16),
    hmtx: usize,
    long_metrics: usize,
    /// Pixels per font unit at text size 1 (plotters' size is ascent minus descent).
    scale: f64,
}

impl Glyphs {
    fn parse(data: &'static [u8]) -> Option<Glyphs> {
        let u16_at = |o: usize| Some(u16::from_be_bytes(data.get(o..o + 2)?.try_into().ok()?));
        let u32_at = |o: usize| Some(u32::from_be_bytes(data.get(o..o + 4)?.try_into().ok()?) as usize);
        let table = |tag: &[u8]| {
            (0..u16_at(4)? as usize)
                .map(|i| 12 + 16 * i)
                .find(|&r| data.get(r..r + 4) == Some(tag))
                .and_then(|r| u32_at(r + 8))
        };
        let (cmap, hhea, hmtx) = (table(b"cmap")?, table(b"hhea")?, table(b"hmtx")?);
        let height = i32::from(u16_at(hhea + 4)? as i16) - i32::from(u16_at(hhea + 6)? as i16);
        let long_metrics = u16_at(hhea + 34)? as usize;
        let mut best: Option<(u8, usize, u16)> = None;
        for i in 0..u16_at(cmap + 2)? as usize {
            let rec = cmap + 4 + 8 * i;
            let (platform, encoding, sub) = (u16_at(rec)?, u16_at(rec + 2)?, cmap + u32_at(rec + 4)?);
            let format = u16_at(sub)?;
            let rank = match (platform, encoding, format) {
                (3, 10, 12) | (0, _, 12) => 2,
                (3, 1, 4) | (0, _, 4) => 1,
                _ => continue,
            };
            if best.map_or(true, |(r, _, _)| rank > r) {
                best = Some((rank, sub, format));
            }
        }
        let (_, sub, format) = best?;
        if height <= 0 || long_metrics == 0 {
            return None;
        }
        let glyphs = Glyphs { data, cmap: (sub, format), hmtx, long_metrics, scale: 1.0 / f64::from(height) };
        // Every lookup must stay inside the file; check one glyph before trusting the tables.
        glyphs.metrics('a').map(|_| glyphs)
    }

    fn u16_at(&self, o: usize) -> Option<u16> {
        Some(u16::from_be_bytes(self.data.get(o..o + 2)?.try_into().ok()?))
    }

    fn u32_at(&self, o: usize) -> Option<u32> {
        Some(u32::from_be_bytes(self.data.get(o..o + 4)?.try_into().ok()?))
    }

    fn glyph_id(&self, c: char) -> Option<usize> {
        let (sub, format) = self.cmap;
        let c = c as u32;
        if format == 12 {
            let groups = self.u32_at(sub + 12)? as usize;
            for g in 0..groups {
                let rec = sub + 16 + 12 * g;
                let (start, end) = (self.u32_at(rec)?, self.u32_at(rec + 4)?);
                if (start..=end).contains(&c) {
                    return Some((self.u32_at(rec + 8)? + c - start) as usize);
                }
            }
            return Some(0);
        }
        let segments = self.u16_at(sub + 6)? as usize / 2;
        let ends = sub + 14;
        let starts = ends + 2 * segments + 2;
        let deltas = starts + 2 * segments;
        let offsets = deltas + 2 * segments;
        for i in 0..segments {
            if c > u32::from(self.u16_at(ends + 2 * i)?) {
                continue;
            }
            let start = u32::from(self.u16_at(starts + 2 * i)?);
            if c < start {
                return Some(0);
            }
            let delta = u32::from(self.u16_at(deltas + 2 * i)?);
            let offset = self.u16_at(offsets + 2 * i)? as usize;
            if offset == 0 {
                return Some(((c + delta) & 0xffff) as usize);
            }
            let g = u32::from(self.u16_at(offsets + 2 * i + offset + 2 * (c - start) as usize)?);
            return Some(if g == 0 { 0 } else { ((g + delta) & 0xffff) as usize });
        }
        Some(0)
    }

    /// (advance, left side bearing) of `c` in pixels at text size 1.
    fn metrics(&self, c: char) -> Option<(f64, f64)> {
        let g = self.glyph_id(c)?;
        let last = self.long_metrics - 1;
        let advance = self.u16_at(self.hmtx + 4 * g.min(last))?;
        let lsb = if g <= last {
            self.u16_at(self.hmtx + 4 * g + 2)?
        } else {
            self.u16_at(self.hmtx + 4 * self.long_metrics + 2 * (g - self.long_metrics))?
        } as i16;
        Some((f64::from(advance) * self.scale, f64::from(lsb) * self.scale))
    }
}

// ---------------------------------------------------------------------------------------------
// Text

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
const TITLE_H: u32 = 48;

/// Text reading left to right, or bottom to top (for a y axis label or a label on a narrow bar).
#[derive(Clone, Copy, PartialEq)]
enum Dir {
    Right,
    Up,
}

/// Where a label sits relative to its anchor point, along and across its reading direction.
#[derive(Clone, Copy)]
struct Anchor {
    along: HPos,
    across: VPos,
}

const fn anchor(along: HPos, across: VPos) -> Anchor {
    Anchor { along, across }
}

fn style(size: f64, color: RGBColor) -> TextStyle<'static> {
    (FAMILY, size).into_font().color(&color)
}

/// Width in pixels of `text` as plotters lays it out (advances plus kerning) at `size`.
fn plotters_width(text: &str, size: f64) -> f64 {
    style(size, TEXT).font.box_size(text).map_or(0.0, |(w, _)| f64::from(w))
}

/// Per character of `text` at `size`: (character, pen position, left side bearing), then the
/// text's width as the pen position of a last `'\0'` entry.
fn layout(text: &str, size: f64) -> Vec<(char, f64, f64)> {
    // Kerning of a pair, measured at a large size (plotters reports whole pixels) and scaled.
    const BIG: f64 = 1000.0;
    let mut pen = 0.0;
    let mut out = Vec::new();
    let mut prev: Option<(char, f64)> = None;
    for c in text.chars() {
        let (advance, lsb) =
            glyphs().and_then(|g| g.metrics(c)).unwrap_or_else(|| (plotters_width(&c.to_string(), BIG) / BIG, 0.0));
        if let Some((p, p_advance)) = prev {
            let pair = plotters_width(&format!("{p}{c}"), BIG) / BIG;
            let kern = pair - p_advance - advance;
            if kern.abs() > 2.0 / BIG {
                pen += kern * size;
            }
        }
        out.push((c, pen, lsb * size));
        pen += advance * size;
        prev = Some((c, advance));
    }
    out.push(('\0', pen, 0.0));
    out
}

/// Width in pixels of `text` at `size`.
fn text_width(text: &str, size: f64) -> f64 {
    layout(text, size).last().map_or(0.0, |&(_, w, _)| w)
}

/// Draws `text` at `at` (pixels in `area`). Across the reading direction, `Top` puts the tops of
/// tall letters at the anchor, `Center` centres lower- and upper-case letters on it, and
/// `Bottom` puts the baseline there.
fn label(area: &Area, text: &str, size: f64, color: RGBColor, at: (i32, i32), a: Anchor, dir: Dir) -> DrawResult {
    if text.is_empty() {
        return Ok(());
    }
    let s = style(size, color);
    let s = if dir == Dir::Up { s.transform(FontTransform::Rotate270) } else { s };
    if glyphs().is_none() {
        area.draw_text(text, &s.pos(Pos::new(a.along, a.across)), at)?;
        return Ok(());
    }
    let glyphs = layout(text, size);
    let width = glyphs.last().map_or(0.0, |&(_, w, _)| w);
    let start = match a.along {
        HPos::Left => 0.0,
        HPos::Center => -width / 2.0,
        HPos::Right => -width,
    };
    // Distance from the anchor down to the baseline.
    let baseline = match a.across {
        VPos::Top => 0.74 * size,
        VPos::Center => 0.30 * size,
        VPos::Bottom => 0.0,
    };
    // plotters puts a glyph's baseline half a size below the top-anchored position it is given.
    let down = baseline - size / 2.0;
    let s = s.pos(Pos::new(HPos::Left, VPos::Top));
    for &(c, pen, lsb) in &glyphs[..glyphs.len() - 1] {
        if c.is_whitespace() {
            continue;
        }
        // plotters rasterizes the glyph with the fraction of its bearing inside its first pixel
        // column and puts that column at the position given: add only the whole pixels.
        let along = ((start + pen).round() + lsb.floor()) as i32;
        let across = down.round() as i32;
        let pos = match dir {
            Dir::Right => (at.0 + along, at.1 + across),
            Dir::Up => (at.0 + across, at.1 - along),
        };
        area.draw_text(&c.to_string(), &s, pos)?;
    }
    Ok(())
}

/// `text` cut (with an ellipsis) to fit `max_w` pixels at `size`.
fn fit(text: &str, size: f64, max_w: f64) -> String {
    if text_width(text, size) <= max_w {
        return text.to_string();
    }
    let chars: Vec<char> = text.chars().collect();
    for n in (1..chars.len()).rev() {
        let cut: String = chars[..n].iter().collect::<String>().trim_end().to_string() + "…";
        if text_width(&cut, size) <= max_w {
            return cut;
        }
    }
    "…".to_string()
}

// ---------------------------------------------------------------------------------------------
// Shared drawing helpers

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
/// Marker shapes cycle with a period (5) coprime to the palette's (12), so the first 60 series
/// all differ in colour or shape.
const MARKERS: usize = 5;

/// An f64 axis over a range whose ticks (and grid lines) are exactly `ticks`.
struct Ticked {
    inner: RangedCoordf64,
    ticks: Vec<f64>,
}

impl Ticked {
    fn new(lo: f64, hi: f64, ticks: Vec<f64>) -> Self {
        Ticked { inner: (lo..hi).into(), ticks }
    }
}

impl Ranged for Ticked {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.inner.map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        // Bold points only: no light grid lines between the ticks.
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.inner.range()
    }
}

type Chart<'a, 'b> = ChartContext<'a, BitMapBackend<'b>, Cartesian2d<Ticked, Ticked>>;

/// "Nice" ticks inside [lo, hi]: steps of 1, 2 or 5 times a power of ten, about `max` of them,
/// whole numbers only when `integers`. Returns the ticks and how to print them: with that many
/// decimals, or (`None`) in scientific notation when they are tiny or huge.
fn nice_ticks(lo: f64, hi: f64, max: usize, integers: bool) -> (Vec<f64>, Option<usize>) {
    let raw = (hi - lo) / max.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let mut step =
        [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw * (1.0 - 1e-9)).unwrap_or(10.0 * mag);
    if integers {
        step = step.max(1.0).round();
    }
    let decimals = if integers { 0 } else { (-step.log10().floor()).max(0.0) as usize };
    let (first, last) = ((lo / step - 1e-9).ceil() as i64, (hi / step + 1e-9).floor() as i64);
    let ticks: Vec<f64> = (first..=last).map(|k| if k == 0 { 0.0 } else { k as f64 * step }).collect();
    let huge = ticks.iter().any(|t| t.abs() >= 1e6);
    (ticks, if decimals > 4 || huge { None } else { Some(decimals) })
}

/// A tick label: `v` with `decimals`, or in scientific notation ("2.5e-5") for `None`.
fn format_tick(v: f64, decimals: Option<usize>) -> String {
    match decimals {
        Some(d) => format!("{v:.d$}"),
        None if v == 0.0 => "0".to_string(),
        None => {
            let s = format!("{v:.3e}");
            let (mantissa, exponent) = s.split_once('e').unwrap_or((&s, "0"));
            format!("{}e{exponent}", mantissa.trim_end_matches('0').trim_end_matches('.'))
        }
    }
}

/// Ticks for an axis `length_px` long whose labels (at `TICK_SIZE`) do not crowd each other:
/// at most `max`, fewer when the labels would need more room than the axis has.
fn spaced_ticks(
    lo: f64,
    hi: f64,
    max: usize,
    integers: bool,
    length_px: f64,
    label_extent: impl Fn(&str) -> f64,
) -> (Vec<f64>, Option<usize>) {
    let mut max = max;
    loop {
        let (ticks, format) = nice_ticks(lo, hi, max, integers);
        let extent = ticks.iter().map(|t| label_extent(&format_tick(*t, format))).fold(0.0, f64::max);
        if max <= 2 || ticks.len() as f64 * (extent + 16.0) <= length_px {
            return (ticks, format);
        }
        max -= 1;
    }
}

/// Draws the axes, tick marks and grid of `chart`; with `x_grid` false, no vertical grid lines.
/// Tick labels are lettered separately (see `label`), so plotters prints none.
fn draw_mesh(chart: &mut Chart, x_grid: bool) -> DrawResult {
    let blank = |_: &f64| String::new();
    let mut mesh = chart.configure_mesh();
    mesh.x_label_formatter(&blank)
        .y_label_formatter(&blank)
        .bold_line_style(GRID.stroke_width(1))
        .axis_style(MUTED.stroke_width(1))
        .set_all_tick_mark_size(5);
    if !x_grid {
        mesh.disable_x_mesh();
    }
    mesh.draw()?;
    Ok(())
}

/// Letters the y tick labels left of the axis and `y_desc` (reading upwards) left of them,
/// centred on the plot; returns nothing. `left` is the x of the image column the description
/// is centred in.
fn draw_y_labels(
    root: &Area,
    chart: &Chart,
    ticks: &[f64],
    decimals: Option<usize>,
    y_desc: &str,
    desc_x: i32,
) -> DrawResult {
    let (xs, ys) = chart.plotting_area().get_pixel_range();
    for &t in ticks {
        let (_, y) = chart.backend_coord(&(chart.x_range().start, t));
        label(
            root,
            &format_tick(t, decimals),
            TICK_SIZE,
            TEXT,
            (xs.start - 9, y),
            anchor(HPos::Right, VPos::Center),
            Dir::Right,
        )?;
    }
    let desc = fit(y_desc, DESC_SIZE, (ys.end - ys.start) as f64);
    label(root, &desc, DESC_SIZE, TEXT, (desc_x, (ys.start + ys.end) / 2), anchor(HPos::Center, VPos::Center), Dir::Up)
}

/// Draws the marker of series number `index` centred on `at`.
fn draw_marker<CT: CoordTranslate>(
    area: &DrawingArea<BitMapBackend<'_>, CT>,
    at: CT::From,
    index: usize,
    color: RGBColor,
) -> DrawResult {
    let fill = color.filled();
    match index % MARKERS {
        0 => area.draw(&(EmptyElement::at(at) + Circle::new((0, 0), 4, fill)))?,
        1 => area.draw(&(EmptyElement::at(at) + Rectangle::new([(-4, -4), (4, 4)], fill)))?,
        2 => area.draw(&(EmptyElement::at(at) + TriangleMarker::new((0, 0), 6, fill)))?,
        3 => area.draw(&(EmptyElement::at(at) + Polygon::new(vec![(0, -6), (6, 0), (0, 6), (-6, 0)], fill)))?,
        _ => area.draw(&(EmptyElement::at(at) + Cross::new((0, 0), 5, color.stroke_width(2))))?,
    }
    Ok(())
}

/// The temporary sibling a chart is rendered into: `<stem>.tmp.png` (plotters picks the image
/// format from the extension, so it must end in `.png`).
fn tmp_png(path: &Path) -> Result<PathBuf> {
    let is_png = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("png"));
    let stem = path.file_stem().filter(|_| is_png).ok_or_else(|| {
        invalid(format!("{}: a chart is written as a PNG file; its name must end in .png", path.display()))
    })?;
    let mut name = stem.to_os_string();
    name.push(".tmp.png");
    Ok(path.with_file_name(name))
}

/// Registers the font, then renders a `size` chart with `draw` into a temporary sibling of
/// `path` and renames it into place; on failure the temporary file is removed and `path` is
/// left as it was. Every error names `path`.
fn render(path: &Path, size: (u32, u32), draw: impl FnOnce(&Area) -> DrawResult) -> Result<()> {
    let tmp = tmp_png(path)?;
    ensure_font().map_err(|e| invalid(format!("{}: cannot draw the chart: {e}", path.display())))?;
    let drawn = (|| -> DrawResult {
        let root = BitMapBackend::new(&tmp, size).into_drawing_area();
        root.fill(&WHITE)?;
        draw(&root)?;
        root.present()?;
        Ok(())
    })(); // the backend is dropped here, before the temporary file is removed
    if let Err(e) = drawn {
        let _ = std::fs::remove_file(&tmp);
        return Err(invalid(format!("{}: drawing the chart failed: {e}", path.display())));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// Draws `title` centred in the band of height `TITLE_H` at the top of `root`.
fn draw_title(root: &Area, title: &str) -> DrawResult {
    let (w, _) = root.dim_in_pixel();
    let text = fit(title, TITLE_SIZE, f64::from(w) - 40.0);
    label(
        root,
        &text,
        TITLE_SIZE,
        TEXT,
        (w as i32 / 2, TITLE_H as i32 / 2 + 2),
        anchor(HPos::Center, VPos::Center),
        Dir::Right,
    )
}

/// Draws "no data" centred in a framed box filling `area`.
fn draw_no_data(area: &Area) -> DrawResult {
    let (w, h) = area.dim_in_pixel();
    let (w, h) = (w as i32, h as i32);
    area.draw(&Rectangle::new([(0, 0), (w - 1, h - 1)], GRID.stroke_width(1)))?;
    label(area, "no data", DESC_SIZE, MUTED, (w / 2, h / 2), anchor(HPos::Center, VPos::Center), Dir::Right)
}

// ---------------------------------------------------------------------------------------------
// Line charts

const PANEL_W: u32 = 700;
const LINE_H: u32 = 500;
const CAPTION_H: u32 = 36;
const LEGEND_ROW: u32 = 26;
const LEGEND_SWATCH: u32 = 36;
const LEGEND_LABEL_W: f64 = 320.0;

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
    // Legend geometry needs the font's metrics, so the font is registered before `render` asks.
    ensure_font().map_err(|e| invalid(format!("{}: cannot draw the chart: {e}", path.display())))?;
    let legend: Vec<String> = labels.iter().map(|l| fit(l, LEGEND_SIZE, LEGEND_LABEL_W)).collect();
    let top = TITLE_H + CAPTION_H + 8;
    let rows = ((LINE_H - top - 20) / LEGEND_ROW).max(1) as usize;
    // Columns of `rows` entries, each as wide as its widest label; x of each column's left edge.
    let mut column_x = vec![4u32];
    for column in legend.chunks(rows) {
        let widest = column.iter().map(|l| text_width(l, LEGEND_SIZE)).fold(0.0, f64::max).ceil() as u32;
        column_x.push(column_x.last().expect("never empty") + LEGEND_SWATCH + widest + 24);
    }
    let legend_w = if legend.is_empty() { 0 } else { column_x.last().expect("never empty") + 8 };
    let plots_w = PANEL_W * panels.len() as u32;
    render(path, (plots_w + legend_w, LINE_H), |root| {
        draw_title(root, title)?;
        let (_, body) = root.split_vertically(TITLE_H);
        let (plots, legend_area) = body.split_horizontally(plots_w);
        for (cell, (panel_title, series)) in plots.split_evenly((1, panels.len())).iter().zip(panels) {
            draw_line_panel(root, cell, panel_title, x_label, y_label, series, &labels)?;
        }
        for (i, text) in legend.iter().enumerate() {
            let x = column_x[i / rows] as i32;
            let y = (CAPTION_H + 8 + LEGEND_ROW / 2) as i32 + (i % rows) as i32 * LEGEND_ROW as i32;
            let color = PALETTE[i % PALETTE.len()];
            let line_end = x + LEGEND_SWATCH as i32 - 8;
            legend_area.draw(&PathElement::new(vec![(x, y), (line_end, y)], color.stroke_width(2)))?;
            draw_marker(&legend_area, ((x + line_end) / 2, y), i, color)?;
            label(
                &legend_area,
                text,
                LEGEND_SIZE,
                TEXT,
                (x + LEGEND_SWATCH as i32, y),
                anchor(HPos::Left, VPos::Center),
                Dir::Right,
            )?;
        }
        Ok(())
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

fn draw_line_panel(
    root: &Area,
    cell: &Area,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    labels: &[&str],
) -> DrawResult {
    let (cell_w, _) = cell.dim_in_pixel();
    let (head, body) = cell.split_vertically(CAPTION_H);
    let finite: Vec<(f64, f64)> =
        series.iter().flat_map(|s| &s.points).copied().filter(|(x, y)| x.is_finite() && y.is_finite()).collect();
    if finite.is_empty() {
        let caption = fit(title, CAPTION_SIZE, f64::from(cell_w) - 30.0);
        label(
            &head,
            &caption,
            CAPTION_SIZE,
            TEXT,
            (cell_w as i32 / 2, CAPTION_H as i32 / 2),
            anchor(HPos::Center, VPos::Center),
            Dir::Right,
        )?;
        return draw_no_data(&body.margin(4, 30, 84, 24));
    }
    let min_max = |pick: fn(&(f64, f64)) -> f64| {
        finite.iter().map(pick).fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)))
    };
    let ((x_min, x_max), (y_min, y_max)) = (min_max(|p| p.0), min_max(|p| p.1));
    let integers = finite.iter().all(|(x, _)| x.fract() == 0.0 && x.abs() < 1e15);
    let (x_lo, x_hi) = padded(x_min, x_max, 0.04, if integers { 0.25 } else { 0.0 });
    let (y_lo, y_hi) = padded(y_min, y_max, 0.05, 0.0);
    let (_, cell_h) = cell.dim_in_pixel();
    let line_h = TICK_SIZE * 1.2;
    let (y_ticks, y_dec) = spaced_ticks(y_lo, y_hi, 8, false, f64::from(cell_h - CAPTION_H - 58 - 12), |_| line_h);
    let y_tick_w = y_ticks.iter().map(|v| text_width(&format_tick(*v, y_dec), TICK_SIZE)).fold(0.0, f64::max);
    let y_area = y_tick_w.ceil() as u32 + 48;
    let plot_w = f64::from(cell_w.saturating_sub(y_area + 8 + 26));
    let (x_ticks, x_dec) = spaced_ticks(x_lo, x_hi, 10, integers, plot_w, |t| text_width(t, TICK_SIZE));

    let mut chart = ChartBuilder::on(&body)
        .margin_top(6)
        .margin_left(8)
        .margin_right(26)
        .margin_bottom(6)
        .x_label_area_size(58)
        .y_label_area_size(y_area)
        .build_cartesian_2d(Ticked::new(x_lo, x_hi, x_ticks.clone()), Ticked::new(y_lo, y_hi, y_ticks.clone()))?;
    draw_mesh(&mut chart, true)?;

    let (xs, ys) = chart.plotting_area().get_pixel_range();
    let centre = (xs.start + xs.end) / 2;
    // The caption is centred on the plot, so it may use twice the room on its nearer side.
    let (cell_x, _) = cell.get_base_pixel();
    let room = 2 * (centre - cell_x).min(cell_x + cell_w as i32 - centre) - 16;
    let caption = fit(title, CAPTION_SIZE, f64::from(room));
    label(root, &caption, CAPTION_SIZE, TEXT, (centre, ys.start - 8), anchor(HPos::Center, VPos::Bottom), Dir::Right)?;
    for &t in &x_ticks {
        let (x, _) = chart.backend_coord(&(t, y_lo));
        label(
            root,
            &format_tick(t, x_dec),
            TICK_SIZE,
            TEXT,
            (x, ys.end + 10),
            anchor(HPos::Center, VPos::Top),
            Dir::Right,
        )?;
    }
    let desc = fit(x_label, DESC_SIZE, (xs.end - xs.start) as f64);
    label(root, &desc, DESC_SIZE, TEXT, (centre, ys.end + 36), anchor(HPos::Center, VPos::Top), Dir::Right)?;
    draw_y_labels(root, &chart, &y_ticks, y_dec, y_label, cell_x + 8 + 14)?;

    for s in series {
        let index = labels.iter().position(|l| *l == s.label).unwrap_or(0);
        let color = PALETTE[index % PALETTE.len()];
        for run in finite_runs(&s.points) {
            if run.len() > 1 {
                chart.draw_series(LineSeries::new(run.iter().copied(), color.stroke_width(2)))?;
            }
            for p in run {
                draw_marker(chart.plotting_area(), p, index, color)?;
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Bar charts

const BAR_W: u32 = 1400;
const BAR_H: u32 = 600;
const X_LABEL_LINES: usize = 4;
const ERROR_BAR: RGBColor = RGBColor(40, 40, 40);

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
    render(path, (BAR_W, BAR_H), |root| {
        draw_title(root, title)?;
        let (_, body) = root.split_vertically(TITLE_H);
        let legend_h = draw_bar_legend(&body, series_names)?;
        let (_, plot) = body.split_vertically(legend_h);
        draw_bars(root, &plot, y_label, series_names.len(), groups)
    })
}

/// Draws the legend as centred rows at the top of `area`; returns the height it took.
fn draw_bar_legend(area: &Area, names: &[String]) -> DrawResult<u32> {
    let (w, _) = area.dim_in_pixel();
    let (gap, swatch) = (30.0, 16.0);
    let entries: Vec<(String, f64)> = names
        .iter()
        .map(|n| {
            let n = fit(n, LEGEND_SIZE, LEGEND_LABEL_W);
            let width = swatch + 8.0 + text_width(&n, LEGEND_SIZE);
            (n, width)
        })
        .collect();
    let max_w = f64::from(w) - 40.0;
    let mut rows: Vec<(Vec<usize>, f64)> = vec![(Vec::new(), 0.0)];
    for (i, (_, ew)) in entries.iter().enumerate() {
        let row = rows.last_mut().expect("rows is never empty");
        if row.0.is_empty() || row.1 + gap + ew <= max_w {
            row.1 += if row.0.is_empty() { *ew } else { gap + ew };
            row.0.push(i);
        } else {
            rows.push((vec![i], *ew));
        }
    }
    for (r, (row, total)) in rows.iter().enumerate() {
        let mut x = (f64::from(w) - total) / 2.0;
        let y = 14 + r as i32 * LEGEND_ROW as i32;
        for &i in row {
            let color = PALETTE[i % PALETTE.len()];
            let (x0, half) = (x.round() as i32, swatch as i32 / 2);
            area.draw(&Rectangle::new([(x0, y - half), (x0 + swatch as i32, y + half)], color.filled()))?;
            label(
                area,
                &entries[i].0,
                LEGEND_SIZE,
                TEXT,
                (x0 + swatch as i32 + 8, y),
                anchor(HPos::Left, VPos::Center),
                Dir::Right,
            )?;
            x += entries[i].1 + gap;
        }
    }
    Ok(26 + rows.len() as u32 * LEGEND_ROW)
}

/// Characters a configuration name may be broken after.
const BREAK_AFTER: &str = ":-_/,=.";

/// Splits `text` into as few lines no wider than `max_w` pixels at `size` as it can: breaking at
/// spaces or after separators, preferring (in this order) spaces, `:`, then `/`, `,`, `=`, then
/// `_`, `-`, `.`, and inside a word only when it alone is too wide; among equally good splits,
/// the one with the most even lines. A separator ending a line may overhang.
fn wrap(text: &str, size: f64, max_w: f64) -> Vec<String> {
    let shown = |s: &str| -> f64 {
        let s = s.trim_end();
        text_width(s.strip_suffix(|c| BREAK_AFTER.contains(c)).unwrap_or(s), size)
    };
    // Pieces end after a separator or a space; a piece wider than a line is cut between characters.
    let mut pieces: Vec<String> = Vec::new();
    let mut piece = String::new();
    let push = |piece: String, pieces: &mut Vec<String>| {
        if shown(&piece) <= max_w {
            pieces.push(piece);
            return;
        }
        let mut part = String::new();
        for c in piece.chars() {
            part.push(c);
            if part.chars().count() > 1 && shown(&part) > max_w {
                part.pop();
                pieces.push(std::mem::replace(&mut part, c.to_string()));
            }
        }
        pieces.push(part);
    };
    for c in text.chars() {
        piece.push(c);
        if c == ' ' || BREAK_AFTER.contains(c) {
            push(std::mem::take(&mut piece), &mut pieces);
        }
    }
    if !piece.is_empty() {
        push(piece, &mut pieces);
    }
    let n = pieces.len();
    if n == 0 {
        return Vec::new();
    }
    // width[i][j]: the line made of pieces i..j.
    let width: Vec<Vec<f64>> =
        (0..n).map(|i| (0..=n).map(|j| if j > i { shown(&pieces[i..j].concat()) } else { 0.0 }).collect()).collect();
    // The cost of a line break after piece i - 1.
    let penalty = |i: usize| match pieces[i - 1].chars().last() {
        Some(' ') => 0,
        Some(':') => 1,
        Some('/' | ',' | '=') => 2,
        Some('_' | '-' | '.') => 3,
        _ => 10,
    };
    // best[j] = (lines, break penalties, widest line) of the best split of pieces 0..j;
    // from[j] = the first piece of its last line.
    let mut best = vec![(0usize, 0usize, 0.0f64); n + 1];
    let mut from = vec![0usize; n + 1];
    for j in 1..=n {
        best[j] = (usize::MAX, usize::MAX, f64::INFINITY);
        for i in 0..j {
            // A single piece always gets a line of its own, even when it is too wide.
            if best[i].0 == usize::MAX || (width[i][j] > max_w && j - i > 1) {
                continue;
            }
            let breaks = best[i].1 + if i > 0 { penalty(i) } else { 0 };
            let candidate = (best[i].0 + 1, breaks, best[i].2.max(width[i][j]));
            if candidate.partial_cmp(&best[j]) == Some(std::cmp::Ordering::Less) {
                best[j] = candidate;
                from[j] = i;
            }
        }
    }
    let mut lines = Vec::new();
    let mut j = n;
    while j > 0 {
        lines.push(pieces[from[j]..j].concat().trim().to_string());
        j = from[j];
    }
    lines.reverse();
    lines
}

/// Where the bar of series `s` (of `k`) in group `g` starts and ends along x.
fn bar_span(g: usize, s: usize, k: usize) -> (f64, f64) {
    let width = 0.8 / k as f64;
    let x0 = g as f64 - 0.4 + s as f64 * width;
    (x0 + width * 0.06, x0 + width * 0.94)
}

fn draw_bars(root: &Area, plot: &Area, y_label: &str, k: usize, groups: &[BarGroup]) -> DrawResult {
    let present: Vec<(f64, f64)> = groups
        .iter()
        .flat_map(|g| &g.values)
        .filter(|(m, _)| m.is_finite())
        .map(|&(m, sd)| if sd.is_finite() { (m - sd.abs(), m + sd.abs()) } else { (m, m) })
        .collect();
    if present.is_empty() {
        return draw_no_data(&plot.margin(4, 30, 84, 30));
    }
    let n = groups.len();
    let (plot_w, plot_h) = plot.dim_in_pixel();
    let lo = present.iter().map(|p| p.0).fold(0.0, f64::min);
    let hi = present.iter().map(|p| p.1).fold(0.0, f64::max);

    // Layout: the y label area holds the widest tick label and the description; the x label
    // area the most lines any wrapped configuration name takes.
    let (margin_l, margin_r, margin_top) = (8u32, 24u32, 8u32);
    let (rough_ticks, rough_dec) = nice_ticks(lo, hi.max(lo + 1e-9), 8, false);
    let widest = rough_ticks
        .iter()
        .map(|v| text_width(&format_tick(*v, rough_dec.map(|d| d + 1)), TICK_SIZE))
        .fold(0.0, f64::max);
    let y_area = widest.ceil() as u32 + 48;
    let group_px = f64::from(plot_w.saturating_sub(margin_l + margin_r + y_area)) / n as f64;
    let name_w = (group_px - 8.0).max(20.0);
    let wrapped: Vec<Vec<String>> = groups
        .iter()
        .map(|g| {
            let mut lines = wrap(&g.label, TICK_SIZE, name_w);
            if lines.len() > X_LABEL_LINES {
                let rest = lines[X_LABEL_LINES - 1..].concat();
                lines.truncate(X_LABEL_LINES - 1);
                lines.push(fit(&rest, TICK_SIZE, name_w));
            }
            lines
        })
        .collect();
    let line_h = (TICK_SIZE * 1.2).round() as i32;
    let max_lines = wrapped.iter().map(Vec::len).max().unwrap_or(1) as u32;
    let x_area = 16 + max_lines * line_h as u32;

    // Room above the bars for the value labels: upright when they fit the bar's width.
    let bar_px = group_px * 0.8 / k as f64 * 0.88;
    let upright = |text: &str| text_width(text, VALUE_SIZE) + 2.0 <= bar_px;
    let value_w = text_width("0.000", VALUE_SIZE);
    let label_px = if upright("0.000") { VALUE_SIZE } else { value_w } + 10.0;
    let inner_h = f64::from(plot_h.saturating_sub(x_area + margin_top));
    let head = (label_px / (inner_h - label_px).max(1.0)).max(0.05);
    let span = (hi - lo).max(1e-9);
    let y_hi = if hi > 0.0 { hi + span * head } else { span * 0.05 };
    let y_lo = if lo < 0.0 { lo - span * head } else { 0.0 };
    let (y_ticks, y_dec) = nice_ticks(y_lo, y_hi, 8, false);

    let mut chart = ChartBuilder::on(plot)
        .margin_top(margin_top)
        .margin_left(margin_l)
        .margin_right(margin_r)
        .x_label_area_size(x_area)
        .y_label_area_size(y_area)
        .build_cartesian_2d(
            Ticked::new(-0.5, n as f64 - 0.5, (0..n).map(|g| g as f64).collect()),
            Ticked::new(y_lo, y_hi, y_ticks.clone()),
        )?;
    draw_mesh(&mut chart, false)?;
    let (plot_x, _) = plot.get_base_pixel();
    draw_y_labels(root, &chart, &y_ticks, y_dec, y_label, plot_x + margin_l as i32 + 12)?;

    // Faint separators between groups.
    for g in 1..n {
        let x = g as f64 - 0.5;
        chart
            .plotting_area()
            .draw(&PathElement::new(vec![(x, y_lo), (x, y_hi)], RGBColor(238, 238, 238).stroke_width(1)))?;
    }
    // A value label just beyond `(x, y)`: above it when `up`, below it otherwise.
    let value = |text: &str, color: RGBColor, x: f64, y: f64, up: bool| -> DrawResult {
        let (px, py) = chart.backend_coord(&(x, y));
        match (upright(text), up) {
            (true, true) => {
                label(root, text, VALUE_SIZE, color, (px, py - 5), anchor(HPos::Center, VPos::Bottom), Dir::Right)
            }
            (true, false) => {
                label(root, text, VALUE_SIZE, color, (px, py + 5), anchor(HPos::Center, VPos::Top), Dir::Right)
            }
            (false, true) => {
                label(root, text, VALUE_SIZE, color, (px, py - 5), anchor(HPos::Left, VPos::Center), Dir::Up)
            }
            (false, false) => {
                label(root, text, VALUE_SIZE, color, (px, py + 5), anchor(HPos::Right, VPos::Center), Dir::Up)
            }
        }
    };
    for (g, group) in groups.iter().enumerate() {
        for (s, &(mean, sd)) in group.values.iter().enumerate() {
            let (x0, x1) = bar_span(g, s, k);
            let xc = (x0 + x1) / 2.0;
            if !mean.is_finite() {
                value("n/a", MUTED, xc, 0.0, true)?;
                continue;
            }
            let color = PALETTE[s % PALETTE.len()];
            chart.plotting_area().draw(&Rectangle::new([(x0, 0.0), (x1, mean)], color.filled()))?;
            let sd = if sd.is_finite() { sd.abs() } else { 0.0 };
            if sd > 0.0 {
                let cap = (x1 - x0) * 0.18;
                for path in [
                    vec![(xc, mean - sd), (xc, mean + sd)],
                    vec![(xc - cap, mean + sd), (xc + cap, mean + sd)],
                    vec![(xc - cap, mean - sd), (xc + cap, mean - sd)],
                ] {
                    chart.plotting_area().draw(&PathElement::new(path, ERROR_BAR.stroke_width(2)))?;
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
    let (_, ys) = chart.plotting_area().get_pixel_range();
    for (g, lines) in wrapped.iter().enumerate() {
        let (px, _) = chart.backend_coord(&(g as f64, y_lo));
        for (i, line) in lines.iter().enumerate() {
            let at = (px, ys.end + 10 + i as i32 * line_h);
            label(root, line, TICK_SIZE, TEXT, at, anchor(HPos::Center, VPos::Top), Dir::Right)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];

    fn sample_panels() -> Vec<(String, Vec<Series>)> {
        let names = [
            "baseline",
            "freeze:none",
            "freeze:encoder",
            "freeze:layers:3",
            "freeze:embeddings",
            "heads-only",
            "heads-only:tuned",
            "lr:1e-4",
            "lr:5e-5",
            "discriminative-lr",
            "warmup:0.1",
        ];
        let panel = |offset: f64, nan_at: Option<usize>| {
            names
                .iter()
                .enumerate()
                .map(|(i, name)| Series {
                    label: name.to_string(),
                    points: (1..=3)
                        .map(|e| {
                            let y = offset + 0.02 * i as f64 + 0.05 * e as f64;
                            (e as f64, if nan_at == Some(i) && e == 2 { f64::NAN } else { y })
                        })
                        .collect(),
                })
                .collect::<Vec<_>>()
        };
        vec![
            ("Task A (TREC-6): macro-F1".to_string(), panel(0.55, Some(4))),
            ("Task B (SST-3): macro-F1".to_string(), panel(0.40, None)),
        ]
    }

    fn sample_groups() -> (Vec<String>, Vec<BarGroup>) {
        let series = vec!["Task A (TREC-6)".to_string(), "Task B (SST-3)".to_string(), "Task B on tweets".to_string()];
        let names = [
            "baseline",
            "freeze:none",
            "freeze:encoder",
            "freeze:layers:3",
            "freeze:layers:5",
            "freeze:embeddings",
            "heads-only",
            "heads-only:tuned",
            "lr:1e-4",
            "discriminative-lr:0.9",
            "warmup:0.1",
            "transfer:sst-then-trec",
        ];
        let groups = names
            .iter()
            .enumerate()
            .map(|(g, name)| BarGroup {
                label: name.to_string(),
                values: (0..3)
                    .map(|s| {
                        if g == 7 && s == 2 {
                            (f64::NAN, f64::NAN)
                        } else {
                            (0.9 - 0.15 * s as f64 - 0.01 * g as f64, 0.005 + 0.002 * ((g + s) % 5) as f64)
                        }
                    })
                    .collect(),
            })
            .collect();
        (series, groups)
    }

    fn draw_samples(dir: &Path) -> (PathBuf, PathBuf) {
        let lines = dir.join("lines.png");
        line_panels(&lines, "Validation macro-F1 by epoch", "epoch", "macro-F1", &sample_panels()).unwrap();
        let bars = dir.join("bars.png");
        let (series, groups) = sample_groups();
        bar_groups(&bars, "Test accuracy by configuration (mean ± std over 3 seeds)", "accuracy", &series, &groups)
            .unwrap();
        (lines, bars)
    }

    fn assert_png(path: &Path) {
        let bytes = std::fs::read(path).unwrap();
        assert!(bytes.starts_with(&PNG_SIGNATURE), "{} is not a PNG", path.display());
    }

    #[test]
    fn charts_are_written_as_png_without_leftovers() {
        let d = tempfile::tempdir().unwrap();
        let (lines, bars) = draw_samples(d.path());
        assert_png(&lines);
        assert_png(&bars);
        let mut names: Vec<String> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["bars.png", "lines.png"]);
    }

    #[test]
    fn panels_without_data_and_bad_input_are_handled() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("empty.png");
        let panels = vec![("nothing".to_string(), vec![Series { label: "a".into(), points: vec![(1.0, f64::NAN)] }])];
        line_panels(&p, "t", "epoch", "loss", &panels).unwrap();
        assert_png(&p);
        bar_groups(&p, "t", "acc", &["a".to_string()], &[]).unwrap();
        assert_png(&p);

        let e = line_panels(&p, "t", "x", "y", &[]).unwrap_err().to_string();
        assert!(e.contains("empty.png"), "{e}");
        let bad = [BarGroup { label: "g".into(), values: vec![(0.5, 0.1)] }];
        let e = bar_groups(&p, "t", "y", &["a".to_string(), "b".to_string()], &bad).unwrap_err().to_string();
        assert!(e.contains("empty.png") && e.contains("1 values for 2 series"), "{e}");
        let e = line_panels(&d.path().join("chart.svg"), "t", "x", "y", &panels).unwrap_err().to_string();
        assert!(e.contains("chart.svg") && e.contains(".png"), "{e}");
        let missing = d.path().join("no/such/dir/c.png");
        let e = line_panels(&missing, "t", "x", "y", &panels).unwrap_err().to_string();
        assert!(e.contains("c.png"), "{e}");
        assert!(!d.path().join("no").exists());
    }

    #[test]
    fn missing_font_error_names_every_path_tried() {
        let d = tempfile::tempdir().unwrap();
        let env = d.path().join("missing.ttf");
        let default = d.path().join("also-missing.ttf");
        let e = find_font(Some(&env), &[default.to_str().unwrap()]).unwrap_err().to_string();
        assert!(e.contains(env.to_str().unwrap()) && e.contains(default.to_str().unwrap()), "{e}");
        assert!(e.contains("fonts-dejavu-core") && e.contains(FONT_ENV), "{e}");
        let e = find_font(None, &[default.to_str().unwrap()]).unwrap_err().to_string();
        assert!(e.contains("is not set"), "{e}");

        // The variable wins over the defaults; an unset or empty one falls through to them.
        let font = d.path().join("font.ttf");
        std::fs::write(&font, b"x").unwrap();
        assert_eq!(find_font(Some(&font), &[default.to_str().unwrap()]).unwrap(), font);
        assert_eq!(find_font(Some(Path::new("")), &[font.to_str().unwrap()]).unwrap(), font);
        let e = load_font(Some(&font)).err().expect("a one-byte file is no font").to_string();
        assert!(e.contains("font.ttf") && e.contains("not a TrueType"), "{e}");
    }

    #[test]
    fn glyph_metrics_match_plotters_layout() {
        ensure_font().unwrap();
        let g = glyphs().expect("the default font's tables are readable");
        for text in ["baseline", "freeze:layers:3", "Task A (TREC-6)"] {
            let ours = text_width(text, 100.0);
            let theirs = plotters_width(text, 100.0);
            assert!((ours - theirs).abs() <= 1.0, "{text}: {ours} vs {theirs}");
        }
        assert_ne!(g.glyph_id('a'), g.glyph_id('b'));
        assert_eq!(g.glyph_id('\u{10FFFF}'), Some(0));
    }

    #[test]
    fn ticks_are_round_and_names_wrap_at_separators() {
        let (ticks, dec) = nice_ticks(0.75, 3.25, 10, true);
        assert_eq!((ticks, dec), (vec![1.0, 2.0, 3.0], Some(0)));
        let (ticks, dec) = nice_ticks(0.0, 1.0, 8, false);
        assert_eq!((ticks.len(), dec), (6, Some(1)));
        let (ticks, dec) = nice_ticks(0.5e-5, 1.05e-4, 5, false);
        assert_eq!(dec, None);
        assert_eq!(
            ticks.iter().map(|t| format_tick(*t, dec)).collect::<Vec<_>>(),
            ["2e-5", "4e-5", "6e-5", "8e-5", "1e-4"]
        );
        assert_eq!(format_tick(2.5e-5, None), "2.5e-5");
        ensure_font().unwrap();
        assert_eq!(wrap("heads-only:tuned", TICK_SIZE, 1000.0), ["heads-only:tuned"]);
        assert_eq!(wrap("heads-only:tuned", TICK_SIZE, 90.0), ["heads-only:", "tuned"]);
        assert_eq!(wrap("freeze:layers:3", TICK_SIZE, 90.0), ["freeze:", "layers:3"]);
        assert_eq!(wrap("discriminative-lr:0.9", TICK_SIZE, 110.0), ["discriminative-", "lr:0.9"]);
        let cut = wrap("averyveryverylongnamewithoutbreaks", TICK_SIZE, 60.0);
        assert!(cut.len() > 2 && cut.iter().all(|l| text_width(l, TICK_SIZE) <= 60.0), "{cut:?}");
        assert_eq!(cut.concat(), "averyveryverylongnamewithoutbreaks");
    }

    /// Renders the sample charts and some awkward ones (16 series over 20 epochs, a long title
    /// and label, an empty panel, fractional x, an unbreakable name, a group without data, no
    /// groups) to /tmp/plot-check (or $MTT_PLOT_CHECK_DIR) for a human to look at:
    /// `cargo test --lib plot -- --ignored`.
    #[test]
    #[ignore]
    fn render_samples_for_inspection() {
        let dir = std::env::var_os("MTT_PLOT_CHECK_DIR").map(PathBuf::from).unwrap_or_else(|| "/tmp/plot-check".into());
        std::fs::create_dir_all(&dir).unwrap();
        draw_samples(&dir);

        let series: Vec<Series> = (0..16)
            .map(|i| Series {
                label: if i == 3 {
                    "a-really-long-configuration-name:with:many:parts:and-more-text".into()
                } else {
                    format!("config-{i}:variant")
                },
                points: (1..=20)
                    .map(|e| (e as f64, 1.5 / (e as f64 + i as f64 * 0.3) + 0.05 * ((e * (i + 1)) as f64).sin()))
                    .collect(),
            })
            .collect();
        let panels = vec![
            (
                "Training loss (a rather long panel title that might need to be cut to fit the panel)".to_string(),
                series.clone(),
            ),
            (
                "Empty panel".to_string(),
                vec![Series { label: "config-0:variant".into(), points: vec![(1.0, f64::NAN)] }],
            ),
        ];
        line_panels(&dir.join("edge-lines.png"), "Loss", "epoch", "cross-entropy loss", &panels).unwrap();
        let frac = vec![(
            "lr sweep".to_string(),
            vec![Series { label: "x".into(), points: vec![(1e-5, 2.0), (3e-5, 1.5), (1e-4, 1.7)] }],
        )];
        line_panels(&dir.join("edge-fractional-x.png"), "Fractional x", "learning rate", "loss", &frac).unwrap();
        let names = vec![
            "Task A (TREC-6)".to_string(),
            "Task B (SST-3)".to_string(),
            "Task B on tweets".to_string(),
            "A fourth task with a long name".to_string(),
        ];
        let groups: Vec<BarGroup> =
            ["baseline", "averyveryverylongconfigurationnamewithoutanybreaks", "all-missing", "freeze:layers:3", "x"]
                .iter()
                .enumerate()
                .map(|(g, n)| BarGroup {
                    label: n.to_string(),
                    values: (0..4)
                        .map(
                            |s| {
                                if g == 2 {
                                    (f64::NAN, f64::NAN)
                                } else {
                                    (1.2 - 0.2 * s as f64 + 0.05 * g as f64, 0.05)
                                }
                            },
                        )
                        .collect(),
                })
                .collect();
        bar_groups(&dir.join("edge-bars.png"), "Five groups, four tasks, losses", "loss", &names, &groups).unwrap();
        bar_groups(&dir.join("edge-empty.png"), "Nothing yet", "accuracy", &names[..2], &[]).unwrap();
    }
}
