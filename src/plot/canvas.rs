//! The font charts are lettered in and the PNG writer every chart goes through.
//!
//! plotters draws text with a font registered under a family name; without fontconfig it
//! finds none by itself, so `ensure_font` reads a TrueType file (`MTT_PLOT_FONT`, else DejaVu
//! Sans where the common distributions put it) and registers it once per process.
//!
//! plotters' bitmap backend draws lines without anti-aliasing and puts each glyph at a whole
//! pixel, which spaces small letters unevenly ("baselin e"). Charts are therefore drawn `SCALE`
//! times larger and averaged down: lines come out smooth and letters within a third of a pixel
//! of their place. (plotters also drops each glyph's left side bearing, whole pixels of it,
//! which no scale undoes: a colon or a parenthesis sits up to about a pixel early.)

use super::{Area, DrawResult};
use crate::error::{invalid, Error, Result};
use plotters::prelude::*;
use plotters::style::register_font;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Environment variable naming a TrueType font file to letter charts with.
pub(super) const FONT_ENV: &str = "MTT_PLOT_FONT";
/// Where Debian/Ubuntu, Arch and Fedora put DejaVu Sans.
pub(super) const DEFAULT_FONTS: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];
/// The family name the font is registered under, and that every text style asks for.
pub(super) const FAMILY: &str = "sans-serif";
/// Charts are drawn this many times larger than the PNG, then averaged down.
pub(super) const SCALE: u32 = 3;

/// The first existing file of `env` (the value of `MTT_PLOT_FONT`, if set and not empty) and
/// `defaults`; the error lists every path tried.
pub(super) fn find_font(env: Option<&Path>, defaults: &[&str]) -> Result<PathBuf> {
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

/// Reads the font `find_font` picks and registers it as the "sans-serif" family.
pub(super) fn load_font(env: Option<&Path>) -> Result<()> {
    let path = find_font(env, &DEFAULT_FONTS)?;
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    // plotters keeps fonts for the life of the process; this runs at most once per process.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    register_font(FAMILY, FontStyle::Normal, bytes).map_err(|_| {
        invalid(format!("{}: not a TrueType/OpenType font (set {FONT_ENV} to a .ttf file)", path.display()))
    })
}

/// Registers the charts' font once per process (later calls return the first call's outcome);
/// the error names the chart being drawn, `path`.
pub(super) fn ensure_font(path: &Path) -> Result<()> {
    static FONT: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    FONT.get_or_init(|| {
        let env = std::env::var_os(FONT_ENV).map(PathBuf::from);
        load_font(env.as_deref()).map_err(|e| e.to_string())
    })
    .clone()
    .map_err(|e| invalid(format!("{}: cannot draw the chart: {e}", path.display())))
}

/// The temporary sibling a chart is written to: `<stem>.tmp.png` (plotters picks the image
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

/// Draws a `size` chart (final pixels) with `draw` on a white canvas `SCALE` times larger,
/// averages it down, writes it to a temporary sibling of `path` and renames that into place:
/// readers see the old PNG or the new one, never a part. On failure the temporary file is
/// removed and `path` is left as it was. Every error names `path`.
pub(super) fn render(path: &Path, (w, h): (u32, u32), draw: impl FnOnce(&Area) -> DrawResult) -> Result<()> {
    let tmp = tmp_png(path)?;
    ensure_font(path)?;
    let failed = |e: Box<dyn std::error::Error>| invalid(format!("{}: drawing the chart failed: {e}", path.display()));
    let (big_w, big_h) = (w * SCALE, h * SCALE);
    let mut canvas = vec![255u8; 3 * big_w as usize * big_h as usize];
    (|| -> DrawResult {
        let root = BitMapBackend::with_buffer(&mut canvas, (big_w, big_h)).into_drawing_area();
        draw(&root)?;
        root.present()?;
        Ok(())
    })()
    .map_err(failed)?;
    let image = downsample(&canvas, (w, h));
    let written = (|| -> DrawResult {
        let mut png = BitMapBackend::new(&tmp, (w, h));
        png.blit_bitmap((0, 0), (w, h), &image)?;
        png.present()?;
        Ok(())
    })(); // the backend is dropped here, before the temporary file is removed
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(failed(e));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// The RGB image `size` whose pixels are the means of `SCALE` x `SCALE` blocks of `canvas`.
fn downsample(canvas: &[u8], (w, h): (u32, u32)) -> Vec<u8> {
    let (s, w, h) = (SCALE as usize, w as usize, h as usize);
    let mut out = vec![0u8; 3 * w * h];
    for (i, pixel) in out.chunks_exact_mut(3).enumerate() {
        let (x, y) = (i % w, i / w);
        for (c, value) in pixel.iter_mut().enumerate() {
            let sum: usize = (0..s)
                .flat_map(|dy| (0..s).map(move |dx| 3 * ((y * s + dy) * w * s + x * s + dx) + c))
                .map(|k| usize::from(canvas[k]))
                .sum();
            *value = ((sum + s * s / 2) / (s * s)) as u8;
        }
    }
    out
}
