// Owns reading libtorch's version from its folder. Shared with build.rs through `include!`, so it
// uses std only and has no inner doc comments.

/// The version a libtorch folder declares (`root` holds `lib/`): `build-version` in an official
/// zip or a folder made by scripts/libtorch-site.sh, `version.py` in a PyPI torch wheel.
pub fn libtorch_version_at(root: &std::path::Path) -> Option<String> {
    if let Ok(v) = std::fs::read_to_string(root.join("build-version")) {
        return Some(v.trim().to_string());
    }
    let py = std::fs::read_to_string(root.join("version.py")).ok()?;
    py.lines()
        .find_map(|line| line.strip_prefix("__version__ = "))
        .map(|v| v.trim().trim_matches(|c| c == '\'' || c == '"').to_string())
}
