use super::canvas::{find_font, load_font, FONT_ENV};
use super::*;
use std::path::{Path, PathBuf};

/// A decoded chart: width, height and RGB pixels.
struct Image {
    width: u32,
    height: u32,
    rgb: Vec<[u8; 3]>,
}

fn decode(path: &Path) -> Image {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut reader = png::Decoder::new(file).read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.color_type, info.bit_depth), (png::ColorType::Rgb, png::BitDepth::Eight), "{}", path.display());
    let rgb = buf[..info.buffer_size()].chunks_exact(3).map(|p| [p[0], p[1], p[2]]).collect();
    Image { width: info.width, height: info.height, rgb }
}

/// Decodes the chart at `path`, checks it is `width` (if given) by `height` and drawn on (at
/// least `min_ink` of its pixels not white, in many shades); returns its width.
fn assert_chart(path: &Path, width: Option<u32>, height: u32, min_ink: f64) -> u32 {
    let img = decode(path);
    assert_eq!(img.height, height, "{}", path.display());
    if let Some(w) = width {
        assert_eq!(img.width, w, "{}", path.display());
    }
    let ink = img.rgb.iter().filter(|p| **p != [255, 255, 255]).count() as f64 / img.rgb.len() as f64;
    let colours: std::collections::HashSet<[u8; 3]> = img.rgb.iter().copied().collect();
    assert!(ink >= min_ink, "{}: only {:.2}% of the pixels are drawn on", path.display(), ink * 100.0);
    assert!(colours.len() > 50, "{}: only {} colours", path.display(), colours.len());
    img.width
}

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

/// The default grid's configurations as docs/results/grid-default/results.md has them: mean
/// wall time of a run and mean dev accuracy over tasks A and B.
fn sample_costs() -> Vec<CostPoint> {
    [
        ("uniform", 369.4, 0.811, 0.007),
        ("layerwise", 383.5, 0.779, 0.006),
        ("freeze:encoder", 31.5, 0.546, 0.013),
        ("freeze:all", 1.47, 0.245, 0.039),
        ("freeze:head-a", 364.0, 0.810, 0.005),
        ("freeze:head-b", 366.3, 0.811, 0.010),
        ("freeze:layers:3", 222.3, 0.793, 0.011),
        ("layer-decay:0.8", 555.6, 0.802, 0.006),
        ("tuned", 1231.5, 0.831, 0.009),
        ("heads-only:tuned", 5.93, 0.734, 0.005),
    ]
    .iter()
    .map(|&(label, seconds, accuracy, accuracy_std)| CostPoint { label: label.into(), seconds, accuracy, accuracy_std })
    .collect()
}

fn draw_samples(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let lines = dir.join("lines.png");
    line_panels(&lines, "Validation macro-F1 by epoch", "epoch", "macro-F1", &sample_panels()).unwrap();
    let bars = dir.join("bars.png");
    let (series, groups) = sample_groups();
    bar_groups(&bars, "Test accuracy by configuration (mean ± std over 3 seeds)", "accuracy", &series, &groups)
        .unwrap();
    let cost = dir.join("cost.png");
    accuracy_vs_time(
        &cost,
        "Dev accuracy against training time",
        "dev accuracy (mean of tasks A and B)",
        &sample_costs(),
    )
    .unwrap();
    (lines, bars, cost)
}

#[test]
fn charts_are_written_as_png_without_leftovers() {
    let d = tempfile::tempdir().unwrap();
    let (lines, bars, cost) = draw_samples(d.path());
    // Two 700-pixel panels and a legend column; a 1400-pixel plot and a legend column.
    let w = assert_chart(&lines, None, 500, 0.05);
    assert!((1500..2000).contains(&w), "{w}");
    let w = assert_chart(&bars, None, 600, 0.10);
    assert!((1500..1800).contains(&w), "{w}");
    assert_chart(&cost, Some(1100), 650, 0.03);
    let mut names: Vec<String> =
        std::fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["bars.png", "cost.png", "lines.png"]);
}

#[test]
fn empty_and_nan_inputs_still_draw_a_chart() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("c.png");
    let nan = vec![Series { label: "a".into(), points: vec![(1.0, f64::NAN), (f64::NAN, 2.0)] }];
    let panels = vec![("nothing".to_string(), nan), ("no series".to_string(), vec![])];
    line_panels(&p, "t", "epoch", "loss", &panels).unwrap();
    assert_chart(&p, None, 500, 0.005);
    let one = vec![("one point".to_string(), vec![Series { label: "a".into(), points: vec![(0.0, 0.0)] }])];
    line_panels(&p, "t", "epoch", "loss", &one).unwrap();
    assert_chart(&p, None, 500, 0.01);

    let names = ["a".to_string(), "b".to_string()];
    bar_groups(&p, "t", "acc", &names, &[]).unwrap();
    assert_chart(&p, None, 600, 0.005);
    let missing = [BarGroup { label: "g".into(), values: vec![(f64::NAN, 0.1), (f64::NAN, f64::NAN)] }];
    bar_groups(&p, "t", "acc", &names, &missing).unwrap();
    assert_chart(&p, None, 600, 0.005);
    let odd = [
        BarGroup { label: "negative".into(), values: vec![(-0.5, f64::NAN), (0.2, f64::INFINITY)] },
        BarGroup { label: "zero".into(), values: vec![(0.0, 0.0), (f64::NAN, 0.0)] },
    ];
    bar_groups(&p, "t", "acc", &names, &odd).unwrap();
    assert_chart(&p, None, 600, 0.01);

    for points in [
        vec![],
        vec![CostPoint { label: "x".into(), seconds: f64::NAN, accuracy: 0.5, accuracy_std: 0.0 }],
        vec![CostPoint { label: "x".into(), seconds: 10.0, accuracy: 0.5, accuracy_std: f64::NAN }],
        vec![
            CostPoint { label: "zero".into(), seconds: 0.0, accuracy: 0.5, accuracy_std: 0.1 },
            CostPoint { label: "hundred".into(), seconds: 100.0, accuracy: 0.5, accuracy_std: 0.0 },
            CostPoint { label: "inf".into(), seconds: 5.0, accuracy: f64::INFINITY, accuracy_std: 0.0 },
        ],
    ] {
        accuracy_vs_time(&p, "t", "acc", &points).unwrap();
        assert_chart(&p, Some(1100), 650, 0.005);
    }
}

#[test]
fn bad_input_and_paths_are_errors_naming_the_chart() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("empty.png");
    let e = line_panels(&p, "t", "x", "y", &[]).unwrap_err().to_string();
    assert!(e.contains("empty.png"), "{e}");
    let bad = [BarGroup { label: "g".into(), values: vec![(0.5, 0.1)] }];
    let e = bar_groups(&p, "t", "y", &["a".to_string(), "b".to_string()], &bad).unwrap_err().to_string();
    assert!(e.contains("empty.png") && e.contains("1 values for 2 series"), "{e}");
    let e = bar_groups(&p, "t", "y", &[], &[]).unwrap_err().to_string();
    assert!(e.contains("empty.png"), "{e}");
    let panels = sample_panels();
    let e = line_panels(&d.path().join("chart.svg"), "t", "x", "y", &panels).unwrap_err().to_string();
    assert!(e.contains("chart.svg") && e.contains(".png"), "{e}");
    let missing = d.path().join("no/such/dir/c.png");
    let e = line_panels(&missing, "t", "x", "y", &panels).unwrap_err().to_string();
    assert!(e.contains("c.png"), "{e}");
    let e = accuracy_vs_time(&missing, "t", "y", &sample_costs()).unwrap_err().to_string();
    assert!(e.contains("c.png"), "{e}");
    assert!(!d.path().join("no").exists());
    assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0, "no temporary file is left behind");
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
    let e = load_font(Some(&font)).expect_err("a one-byte file is no font").to_string();
    assert!(e.contains("font.ttf") && e.contains("not a TrueType"), "{e}");
}

#[test]
fn tick_labels_share_their_decimals() {
    let labels = |lo: f64, hi: f64, n: usize| {
        let ticks = plotters::coord::types::RangedCoordf64::from(lo..hi).key_points(n);
        ticks.iter().map(tick_format(lo, hi, n)).collect::<Vec<_>>()
    };
    let two = labels(0.52, 0.96, 10);
    assert!(two.len() >= 4 && two.iter().all(|l| l.len() == 4 && l.starts_with("0.")), "{two:?}");
    assert_eq!(labels(0.75, 3.25, 3), ["1", "2", "3"]);
    assert_eq!(labels(-0.05, 1.05, 6), ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]);
    assert_eq!(labels(0.5e-5, 1.05e-4, 5), ["2e-5", "4e-5", "6e-5", "8e-5", "1e-4"]);
}

#[test]
fn names_wrap_at_separators_and_fit_their_width() {
    canvas::ensure_font(Path::new("test.png")).unwrap();
    let style = font(TICK_SIZE, TEXT);
    let wrap = |text: &str, w: u32| bars::wrap(text, &style, px(w));
    assert_eq!(wrap("heads-only:tuned", 1000), ["heads-only:tuned"]);
    assert_eq!(wrap("freeze:layers:3", 90), ["freeze:", "layers:3"]);
    assert_eq!(wrap("heads-only:tuned", 100), ["heads-only:", "tuned"]);
    assert_eq!(wrap("discriminative-lr:0.9", 120), ["discriminative-lr:", "0.9"]);
    assert_eq!(wrap("discriminative-lr:0.9", 110), ["discriminative-", "lr:0.9"]);
    let cut = wrap("averyveryverylongnamewithoutbreaks", 60);
    assert!(cut.len() > 2 && cut.iter().all(|l| text_width(l, &style) <= px(60)), "{cut:?}");
    assert_eq!(cut.concat(), "averyveryverylongnamewithoutbreaks");
    let short = fit("a-really-long-configuration-name", &style, px(100));
    assert!(short.ends_with('…') && text_width(&short, &style) <= px(100), "{short}");
}

#[test]
fn time_ticks_are_round_durations() {
    let labels = |lo: f64, hi: f64| cost::duration_ticks(lo, hi).into_iter().map(|t| t.1).collect::<Vec<_>>();
    assert_eq!(labels(0.9, 2000.0), ["1 s", "10 s", "1 min", "10 min"]);
    assert_eq!(labels(3.0, 70.0), ["5 s", "10 s", "20 s", "30 s", "1 min"]);
    assert_eq!(labels(1e-4, 1e-2), ["0.0001 s", "0.001 s", "0.01 s"]);
}

#[test]
fn labels_avoid_what_is_taken() {
    let bounds = (0, 0, 1000, 1000);
    let (rect, ring) = cost::place_label((500, 500), (100, 20), bounds, &[]);
    assert_eq!((rect.0 > 500, ring), (true, 0), "right of the point first");
    let (left, ring) = cost::place_label((500, 500), (100, 20), bounds, &[rect]);
    assert_eq!((left.2 < 500, ring), (true, 0), "then left of it");
    let (edge, _) = cost::place_label((990, 500), (100, 20), bounds, &[]);
    assert!(edge.2 <= 1000, "labels stay inside the plot: {edge:?}");
}

/// Renders the committed grid results (docs/results/grid-default/results.json) as
/// `mtt experiment` does, the sample charts, and some awkward ones (16 series over 20 epochs, a
/// long title and label, an empty panel, fractional x, an unbreakable name, a group without
/// data, no groups) to /tmp/plot-check (or $MTT_PLOT_CHECK_DIR) for a human to look at:
/// `cargo test --lib plot -- --ignored`.
#[test]
#[ignore]
fn render_samples_for_inspection() {
    let dir = std::env::var_os("MTT_PLOT_CHECK_DIR").map(PathBuf::from).unwrap_or_else(|| "/tmp/plot-check".into());
    std::fs::create_dir_all(&dir).unwrap();
    draw_samples(&dir);
    render_committed_results(&dir);

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
        ("Empty panel".to_string(), vec![Series { label: "config-0:variant".into(), points: vec![(1.0, f64::NAN)] }]),
    ];
    line_panels(&dir.join("edge-lines.png"), "Loss", "epoch", "cross-entropy loss", &panels).unwrap();
    let many: Vec<Series> =
        (0..40).map(|i| Series { label: format!("configuration number {i}"), points: vec![(1.0, i as f64)] }).collect();
    line_panels(&dir.join("edge-many-series.png"), "Forty series", "epoch", "y", &[("all".into(), many)]).unwrap();
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
                    .map(|s| if g == 2 { (f64::NAN, f64::NAN) } else { (1.2 - 0.2 * s as f64 + 0.05 * g as f64, 0.05) })
                    .collect(),
            })
            .collect();
    bar_groups(&dir.join("edge-bars.png"), "Five groups, four tasks, losses", "loss", &names, &groups).unwrap();
    bar_groups(&dir.join("edge-empty.png"), "Nothing yet", "accuracy", &names[..2], &[]).unwrap();
    let close: Vec<CostPoint> = (0..8)
        .map(|i| CostPoint {
            label: format!("lr:{}e-5", i + 1),
            seconds: 300.0 + 5.0 * i as f64,
            accuracy: 0.80 + 0.002 * i as f64,
            accuracy_std: 0.01,
        })
        .collect();
    accuracy_vs_time(&dir.join("edge-cost-crowded.png"), "Eight runs of about the same cost", "dev accuracy", &close)
        .unwrap();
}

/// The three charts `mtt experiment` draws, from the committed results of the default grid,
/// and the cost chart from the same rows (wall time standing in for training time).
fn render_committed_results(dir: &Path) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/results/grid-default/results.json");
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN); // NaN is written as null
    let rows = r["rows"].as_array().unwrap();
    let name = |row: &serde_json::Value| row["name"].as_str().unwrap().to_string();
    let tasks = ["Task A (TREC-6)", "Task B (SST-3)", "Task B on tweets (out of domain)"].map(String::from);
    let groups: Vec<BarGroup> = rows
        .iter()
        .map(|row| BarGroup {
            label: name(row),
            values: ["a_accuracy", "b_accuracy", "ood_b_accuracy"]
                .iter()
                .map(|k| (f(&row[k]["mean"]), f(&row[k]["std"])))
                .collect(),
        })
        .collect();
    let title = format!("Dev accuracy per configuration (mean ± std over {} seed(s))", r["seeds"]);
    bar_groups(&dir.join("final_accuracy.png"), &title, "accuracy", &tasks, &groups).unwrap();
    let series = |key: &str, y: usize| -> Vec<Series> {
        rows.iter()
            .map(|row| Series {
                label: name(row),
                points: row[key]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| (f(&p[0]), f(&p[y])))
                    .filter(|p| p.1.is_finite())
                    .collect(),
            })
            .filter(|s| !s.points.is_empty())
            .collect()
    };
    let panels =
        |key: &str, a: usize, b: usize| vec![(tasks[0].clone(), series(key, a)), (tasks[1].clone(), series(key, b))];
    let title = "Dev accuracy after each epoch (mean over seeds)";
    line_panels(&dir.join("dev_accuracy.png"), title, "epoch", "accuracy", &panels("per_epoch", 3, 4)).unwrap();
    let title = "Training loss per task (tenth-of-an-epoch means, mean over seeds)";
    line_panels(&dir.join("training_loss.png"), title, "epoch", "cross-entropy", &panels("loss_curve", 1, 2)).unwrap();
    let points: Vec<CostPoint> = rows
        .iter()
        .map(|row| CostPoint {
            label: name(row),
            seconds: f(&row["wall_seconds"]["mean"]),
            accuracy: (f(&row["a_accuracy"]["mean"]) + f(&row["b_accuracy"]["mean"])) / 2.0,
            accuracy_std: (f(&row["a_accuracy"]["std"]) + f(&row["b_accuracy"]["std"])) / 2.0,
        })
        .collect();
    let title = "Dev accuracy against time per run (mean over seeds)";
    accuracy_vs_time(&dir.join("accuracy_vs_time.png"), title, "dev accuracy (mean of tasks A and B)", &points)
        .unwrap();
}

/// A label whose point sits in a crowd finds a free place further out (with a line back to its
/// point) instead of the least-covered place among the near ones.
#[test]
fn a_crowded_label_moves_out_until_it_covers_nothing() {
    let (w, h) = (pxi(200), pxi(12));
    let at = (pxi(500), pxi(500));
    // Everything within 100 px above and below the point, and 250 px to either side, is taken.
    let crowd = (at.0 - pxi(250), at.1 - pxi(100), at.0 + pxi(250), at.1 + pxi(100));
    let (rect, ring) = cost::place_label(at, (w, h), (0, 0, pxi(1000), pxi(1000)), &[crowd]);
    let clear = rect.3 <= crowd.1 || rect.1 >= crowd.3 || rect.2 <= crowd.0 || rect.0 >= crowd.2;
    assert!(clear, "label {rect:?} covers the crowd {crowd:?} (ring {ring})");
    assert!(ring >= 6, "ring {ring}: the crowd needed more than the first six rings");
}
